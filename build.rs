//! Compiles our own StoreAPI and remote read `.proto` subsets with protox (pure Rust), so
//! building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/thanos/store.proto",
        "proto/thanos/info.proto",
        "proto/prometheus/remote.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true) // fault-injecting fakes in the tests serve the same API
        .bytes(".thanos.Chunk.data")
        .bytes(".thanos.Label")
        // chunk data stays a slice of the received frame, as StoreAPI chunks do
        .bytes(".prometheus.Chunk.data")
        .compile_fds(fds)?;
    Ok(())
}
