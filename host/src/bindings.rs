//! Host bindings for the Spin interfaces, generated from `wit/` (world `greeter:app/spin-host`),
//! the same WIT the component targets. WASI comes from wasmtime-wasi and wasmtime-wasi-http.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "greeter:app/spin-host",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/key-value.store": crate::kv::OpenStore,
    },
});
