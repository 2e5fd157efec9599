//! The `weft:filter` world as wasmtime types. The imports are implemented in
//! `host::imports`; the exports are called through the typed functions these bindings
//! look up once per instance (`host::instance`), synchronously or, for a component that
//! imports `http-client` or `global-kv`, asynchronously. Nothing outside `host` sees these types.

wasmtime::component::bindgen!({
    world: "filter",
    path: "../wit",
    imports: {
        "weft:filter/http-client.send": async | trappable,
        "weft:filter/global-kv.get": async | trappable,
        "weft:filter/global-kv.set": async | trappable,
        "weft:filter/global-kv.set-if-absent": async | trappable,
        "weft:filter/global-kv.delete": async | trappable,
        default: trappable,
    },
});
