//! Compiles `proto/*.proto` with the pure-Rust `protox` compiler: no system `protoc`.
//!
//! Both services — the client API (`solidgrid.proto`) and the peer API (`peer.proto`) — go
//! into one file descriptor set, so the reflection service registered with
//! `pb::FILE_DESCRIPTOR_SET` serves both.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["solidgrid.proto", "peer.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("solidgrid_descriptor.bin"),
        protox::prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
