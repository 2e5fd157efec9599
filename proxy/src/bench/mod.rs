//! `weft bench`: what a route's filter chain costs, call by call in process
//! ([`micro`]), and under load against the same proxy without filters ([`load`]).

pub mod html;
pub mod load;
pub mod micro;
pub mod stats;
pub mod table;
