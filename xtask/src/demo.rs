//! `cargo xtask demo`: record a demo identity and show what was recorded.
pub fn run(_once: bool) -> anyhow::Result<()> {
    anyhow::bail!("demo: not yet")
}
