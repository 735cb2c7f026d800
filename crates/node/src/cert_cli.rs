//! `cairn cert`: the cluster's CA and the certificates of members, chunks
//! and operators (docs/security.md, "Certificates").

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cairn_node::tls::certs;
use cairn_node::tls::{Ca, Role, TlsIdentity};
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand)]
pub enum CertCmd {
    /// Create the cluster's certificate authority: DIR/ca.pem and DIR/ca.key
    /// (mode 0600). Keep ca.key offline; only `cert issue` needs it.
    ///
    ///   cairn cert init --dir /etc/cairn/ca
    #[command(verbatim_doc_comment)]
    Init {
        /// Directory for ca.pem and ca.key (created; existing files are never overwritten).
        #[arg(long)]
        dir: PathBuf,
        /// A name for the CA, shown in its subject.
        #[arg(long, default_value = "cluster")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a certificate for one identity into its own directory:
    /// OUT/ca.pem, OUT/cert.pem and OUT/key.pem (0600), the directory given
    /// to `cairn server --tls`, a chunk or the CLI (`cairn --tls`).
    ///
    /// Roles: member:<id> (a meta member: serves, and calls the Raft
    /// service), chunk:<cid> (registers and keeps alive as that cid only),
    /// admin:<name> (every Meta and Fleet RPC), reader:<name> (Meta reads
    /// only).
    ///
    ///   cairn cert issue --ca /etc/cairn/ca --role member:1 --out /etc/cairn/member-1
    ///   cairn cert issue --ca /etc/cairn/ca --role admin:alice --out ~/.cairn/tls
    #[command(verbatim_doc_comment)]
    Issue {
        /// The CA directory (`cert init`).
        #[arg(long)]
        ca: PathBuf,
        /// member:<id>, chunk:<cid>, admin:<name> or reader:<name>.
        #[arg(long)]
        role: Role,
        /// Directory for ca.pem, cert.pem and key.pem (created; existing files are never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Show an identity directory: its role, validity and whether its
    /// certificate chains to the ca.pem beside it.
    ///
    ///   cairn cert show /etc/cairn/member-1
    #[command(verbatim_doc_comment)]
    Show {
        /// An identity directory (`cert issue --out`).
        dir: PathBuf,
    },
}

pub fn run(cmd: CertCmd, json_out: bool) -> Result<()> {
    match cmd {
        CertCmd::Init { dir, name, days } => {
            let (from, until) = certs::validity(days);
            let ca = Ca::generate(&name, from, until)?;
            ca.save(&dir)?;
            say(
                json_out,
                json!({"ca": dir.join("ca.pem"), "key": dir.join("ca.key"), "days": days}),
                &format!(
                    "created the CA in {}: ca.pem (give it to every member, chunk and operator) and ca.key (keep it offline)",
                    dir.display()
                ),
            );
        }
        CertCmd::Issue {
            ca,
            role,
            out,
            days,
        } => {
            let ca =
                Ca::load(&ca).with_context(|| format!("loading the CA from {}", ca.display()))?;
            let (from, until) = certs::validity(days);
            ca.issue_into(&role, from, until, &out)?;
            say(
                json_out,
                json!({"role": role.to_string(), "dir": out, "days": days}),
                &format!(
                    "issued {role} into {} (ca.pem, cert.pem, key.pem), valid {days} days",
                    out.display()
                ),
            );
        }
        CertCmd::Show { dir } => show(&dir, json_out)?,
    }
    Ok(())
}

fn show(dir: &Path, json_out: bool) -> Result<()> {
    let id = TlsIdentity::load(dir)?;
    let role = id.role()?;
    let (valid_from, valid_until) = validity(&id.cert_pem)?;
    let leaf = rustls::pki_types::CertificateDer::from(
        pem_der(&id.cert_pem).context("cert.pem holds no certificate")?,
    );
    let auth = id
        .authenticator()?
        .authenticate(Some(&[leaf]), rustls::pki_types::UnixTime::now());
    let check = match &auth {
        cairn_node::tls::Auth::Verified(_) => "valid: chains to ca.pem".to_string(),
        cairn_node::tls::Auth::Refused(why) => why.clone(),
        cairn_node::tls::Auth::Insecure => "not checked".to_string(),
    };
    say(
        json_out,
        json!({"role": role.to_string(), "valid_from": valid_from, "valid_until": valid_until, "check": check}),
        &format!("role         {role}\nvalid from   {valid_from}\nvalid until  {valid_until}\ncheck        {check}"),
    );
    Ok(())
}

fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()
        .map(|c| c.to_vec())
}

/// (not before, not after) of the first certificate in `pem`, RFC 3339.
fn validity(pem: &str) -> Result<(String, String)> {
    let der = pem_der(pem).context("no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("not a certificate: {e}"))?;
    let v = cert.validity();
    Ok((v.not_before.to_string(), v.not_after.to_string()))
}

fn say(json_out: bool, v: serde_json::Value, text: &str) {
    if json_out {
        println!("{v}");
    } else {
        println!("{text}");
    }
}
