//! The `weft:filter` world as wasmtime types. Only the import side is implemented from
//! these bindings; exports are called through typed functions looked up once per
//! component (see `host::exports`), so the same component can be called synchronously
//! or, when it imports `http-client`, asynchronously.

wasmtime::component::bindgen!({
    world: "filter",
    path: "../wit",
    imports: {
        "weft:filter/http-client.send": async | trappable,
        default: trappable,
    },
});
