fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An absolute path: the target directory is shared between checkouts
    // (CI's clean clone and a working copy), and a relative path would make
    // one checkout's build trust code generated from the other's proto.
    let proto = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    println!(
        "cargo:rerun-if-changed={}",
        proto.join("cairn.proto").display()
    );
    tonic_prost_build::configure().compile_protos(&[proto.join("cairn.proto")], &[proto])?;
    Ok(())
}
