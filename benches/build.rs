//! Generates the gRPC clients from the API's protos with protox (pure Rust, no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["../api/proto/product.proto", "../api/proto/basket.proto", "../api/proto/payment.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["../api/proto"])?;
    tonic_prost_build::configure().build_server(false).build_client(true).compile_fds(fds)?;
    Ok(())
}
