//! One request, in phases.

pub mod route;
