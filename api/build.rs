//! Generates the gRPC server and client code from `proto/` with protox (pure Rust, no system `protoc`),
//! and writes the encoded descriptor set that the reflection service serves.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/product.proto", "proto/basket.proto", "proto/payment.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("kassa_descriptor.bin"), fds.encode_to_vec())?;
    // Requests are decoded by `grpc::codec::StrictCodec` (a message that does not decode is INVALID_ARGUMENT).
    tonic_prost_build::configure().build_server(true).build_client(true).codec_path("crate::grpc::codec::StrictCodec").compile_fds(fds)?;
    Ok(())
}
