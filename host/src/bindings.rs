//! Host-side bindings for the part of the component world the host implements itself
//! (`wasi:config/store`, `wasi:keyvalue/{store,atomics,batch}`) and the refresher it calls.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "clever:auth/platform",
    exports: { default: async },
    // A shared store (Redis) answers over the network.
    imports: {
        "wasi:keyvalue/store": async,
        "wasi:keyvalue/atomics": async,
        "wasi:keyvalue/batch": async,
    },
    with: {
        "wasi:keyvalue/store.bucket": crate::keyvalue::BucketHandle,
        "wasi:keyvalue/atomics.cas": crate::keyvalue::CasHandle,
    },
});
