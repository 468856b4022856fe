//! Compiles our own StoreAPI `.proto` subset with protox (pure Rust), so building needs no
//! `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/thanos/store.proto", "proto/thanos/info.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true) // fault-injecting fakes in the tests serve the same API
        .bytes(".thanos.Chunk.data")
        .compile_fds(fds)?;
    Ok(())
}
