//! Support for the `#[weft_sdk::filter]` expansion. Not a public API.

use std::cell::UnsafeCell;

#[cfg(target_arch = "wasm32")]
pub use crate::backend::bindings;
#[cfg(target_arch = "wasm32")]
pub use crate::backend::glue;
#[cfg(target_arch = "wasm32")]
pub use wit_bindgen;

/// Where an instance keeps its filter once `init` has built it.
///
/// A WebAssembly component instance runs one call at a time on one thread, and the
/// proxy never re-enters it, so plain interior mutability is sound here.
pub struct Slot<T>(UnsafeCell<Option<T>>);

// SAFETY: wasm32 component instances are single-threaded and never re-entered (see
// above). Elsewhere a slot is not `Sync`: native code (the test harness) has threads.
#[cfg(target_arch = "wasm32")]
unsafe impl<T> Sync for Slot<T> {}

impl<T> Slot<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot(UnsafeCell::new(None))
    }

    /// Stores the filter.
    pub fn set(&self, value: T) {
        // SAFETY: single-threaded and not re-entered; no reference from `get` is alive
        // across the call that sets the slot (`init` runs before any phase).
        unsafe { *self.0.get() = Some(value) }
    }

    /// The filter.
    ///
    /// # Panics
    /// If a phase runs before `init` succeeded, which the proxy never does: it throws
    /// away an instance whose `init` failed.
    pub fn get(&self) -> &T {
        // SAFETY: as for `set`.
        match unsafe { &*self.0.get() } {
            Some(value) => value,
            None => panic!("weft filter phase called before init"),
        }
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Exports a filter type through the raw bindings. Expanded by `#[weft_sdk::filter]`.
#[macro_export]
#[doc(hidden)]
macro_rules! __export_filter {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::glue;
            static FILTER: $crate::__private::Slot<$ty> = $crate::__private::Slot::new();
            struct WeftFilterExports;
            impl glue::Guest for WeftFilterExports {
                fn init(config: glue::RawConfig) -> ::std::result::Result<glue::RawInfo, glue::RawInitError> {
                    glue::init::<$ty>(&FILTER, config)
                }
                fn on_request_headers(request: glue::RawView) -> glue::RawAnswer {
                    glue::on_request_headers::<$ty>(&FILTER, request)
                }
                fn on_request_body(request: glue::RawView, body: ::std::vec::Vec<u8>, eos: bool) -> glue::RawAnswer {
                    glue::on_request_body::<$ty>(&FILTER, request, body, eos)
                }
                fn on_response_headers(request: glue::RawView, status: u16, failure: ::std::option::Option<glue::RawFailure>, response: glue::RawView) -> glue::RawAnswer {
                    glue::on_response_headers::<$ty>(&FILTER, request, status, failure, response)
                }
                fn on_response_body(request: glue::RawView, status: u16, failure: ::std::option::Option<glue::RawFailure>, response: glue::RawView, body: ::std::vec::Vec<u8>, eos: bool) -> glue::RawAnswer {
                    glue::on_response_body::<$ty>(&FILTER, request, status, failure, response, body, eos)
                }
                fn on_log(request: glue::RawView, summary: glue::RawSummary) -> glue::RawAnswer {
                    glue::on_log::<$ty>(&FILTER, request, summary)
                }
            }
            $crate::__private::bindings::export_raw!(WeftFilterExports with_types_in $crate::__private::bindings);
        };
    };
}
