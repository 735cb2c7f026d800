fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An absolute path, read at run time (not `env!`, which would bake in the
    // checkout that compiled this script): the target directory is shared
    // between checkouts (CI's clean clone and a working copy), and a relative
    // path would make one checkout's build trust code generated from the
    // other's proto.
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto = dir.join("../../proto");
    println!(
        "cargo:rerun-if-changed={}",
        proto.join("cairn.proto").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        proto.join("etcd.proto").display()
    );
    tonic_prost_build::configure()
        .compile_protos(&[proto.join("cairn.proto")], std::slice::from_ref(&proto))?;
    // The subset of etcd's v3 API the etcd comparison benches drive (client
    // side only).
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&[proto.join("etcd.proto")], &[proto])?;
    Ok(())
}
