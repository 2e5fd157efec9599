//! The `#[weft_sdk::filter]` attribute. Use it through `weft_sdk`, not directly.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, ImplItem, ItemImpl};

/// The phase methods of `weft_sdk::Filter`, in the order of `Phases`' fields.
const PHASE_METHODS: [&str; 5] = [
    "on_request_headers",
    "on_request_body",
    "on_response_headers",
    "on_response_body",
    "on_log",
];

/// Exports a `weft_sdk::Filter` implementation and records which phases it defines.
///
/// See `weft_sdk::filter` for the documentation.
#[proc_macro_attribute]
pub fn filter(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        return syn::Error::new_spanned(attr, "#[weft_sdk::filter] takes no arguments")
            .to_compile_error()
            .into();
    }
    let mut imp = parse_macro_input!(item as ItemImpl);
    let names_filter = imp
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .is_some_and(|seg| seg.ident == "Filter");
    if !names_filter {
        return syn::Error::new_spanned(
            &imp.self_ty,
            "#[weft_sdk::filter] goes on an `impl Filter for T` block",
        )
        .to_compile_error()
        .into();
    }
    let defined = |name: &str| {
        imp.items
            .iter()
            .any(|item| matches!(item, ImplItem::Fn(f) if f.sig.ident == name))
    };
    let [rh, rb, sh, sb, log] = PHASE_METHODS.map(defined);
    imp.items.push(syn::parse_quote! {
        #[doc(hidden)]
        const __PHASES: ::weft_sdk::Phases = ::weft_sdk::Phases {
            request_headers: #rh,
            request_body: #rb,
            response_headers: #sh,
            response_body: #sb,
            log: #log,
        };
    });
    let self_ty = &imp.self_ty;
    quote! {
        #imp
        ::weft_sdk::__export_filter!(#self_ty);
    }
    .into()
}
