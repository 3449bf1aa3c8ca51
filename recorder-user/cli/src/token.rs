//! `recorder token`: a signed, expiring operator token for the web console.
use std::{path::PathBuf, time::Duration};

use clap::Args;

use recorder_api::token;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  # a token for the web console, valid for the default 8 hours
  TOKEN=$(recorder token --tls-cert alice.pem --tls-key alice-key.pem)

  # valid for a week (at most 30 days, and never past the certificate's own expiry)
  recorder token --tls-cert alice.pem --tls-key alice-key.pem --ttl 7d

The token is signed with the operator certificate's key and carries the certificate; the console
checks it against the collector's CA. Only the token goes to stdout; treat it like a password
until it expires.")]
pub(crate) struct TokenArgs {
    /// The operator certificate (PEM).
    #[arg(long, value_name = "FILE", env = "RECORDER_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", env = "RECORDER_TLS_KEY")]
    pub tls_key: PathBuf,
    /// How long the token is valid: seconds, minutes, hours or days (3600s, 30m, 8h, 7d); at
    /// most 30 days.
    #[arg(long, value_name = "DURATION", default_value = "8h", value_parser = parse_ttl)]
    pub ttl: Duration,
}

/// `3600s`, `30m`, `8h`, `7d`.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let usage =
        || format!("{s:?} is not a duration: use a number and s, m, h or d (3600s, 30m, 8h, 7d)");
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(usage)?;
    let (number, unit) = s.split_at(split);
    let number: u64 = number.parse().map_err(|_| usage())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        _ => return Err(usage()),
    };
    let ttl = number
        .checked_mul(unit_secs)
        .map(Duration::from_secs)
        .filter(|d| !d.is_zero() && *d <= token::MAX_TTL)
        .ok_or_else(|| format!("{s:?}: a token is valid from 1 second to 30 days"))?;
    Ok(ttl)
}

pub(crate) fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let token = token::issue(&args.tls_cert, &args.tls_key, args.ttl)?;
    let claims = token::read_unverified(&token)?;
    println!("{token}");
    let cut = if claims.expires - claims.issued < args.ttl.as_secs() {
        " (the certificate's expiry)"
    } else {
        ""
    };
    eprintln!(
        "token for operator {}, valid until {}{cut}",
        claims.name,
        token::rfc3339(claims.expires)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_mins(30)));
        assert_eq!(parse_ttl("8h"), Ok(Duration::from_hours(8)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_hours(7 * 24)));
        assert_eq!(parse_ttl("3600s"), Ok(Duration::from_hours(1)));
        assert_eq!(parse_ttl("30d"), Ok(token::MAX_TTL));
        for bad in [
            "",
            "8",
            "h",
            "8x",
            "1.5h",
            "-1h",
            "8 h",
            "8hours",
            "0s",
            "31d",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
