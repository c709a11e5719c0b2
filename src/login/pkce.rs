//! PKCE (RFC 7636) with the S256 method.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::secret::{Sensitive, random_base64url};

/// A fresh code verifier: 256 random bits, base64url (43 characters, within
/// RFC 7636's 43 to 128).
pub fn new_verifier() -> Sensitive {
    Sensitive::new(random_base64url::<32>())
}

/// The S256 challenge of a verifier.
pub fn challenge(verifier: &Sensitive) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let v = Sensitive::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(challenge(&v), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert_eq!(new_verifier().expose().len(), 43);
    }
}
