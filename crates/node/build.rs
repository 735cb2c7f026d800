fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto/cairn.proto");
    tonic_prost_build::configure()
        .compile_protos(&["../../proto/cairn.proto"], &["../../proto"])?;
    Ok(())
}
