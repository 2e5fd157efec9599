//! The `weft:filter` world as wasmtime types. The imports are implemented in
//! `host::imports`; the exports are called through the typed functions these bindings
//! look up once per instance (`host::instance`), synchronously or, for a component that
//! imports `http-client`, asynchronously. Nothing outside `host` sees these types.

wasmtime::component::bindgen!({
    world: "filter",
    path: "../wit",
    imports: {
        "weft:filter/http-client.send": async | trappable,
        default: trappable,
    },
});
