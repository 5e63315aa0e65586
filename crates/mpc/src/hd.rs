//! Hardened derivation under MPC, exactly as docs/HD-DERIVATION.md (v1) specifies:
//! each party deals a deterministic verifiable secret sharing of a tweak from
//! its chain seed; the sum of the dealt secrets is added to the root key.
//!
//! One round (commitments + proof broadcast, `y_{k→m}` sent directly), then
//! the session's echo/agreement round over the commitments and the child key.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::child_chain_code;
use crate::error::Error;
use crate::group::{eval_commitment, lagrange_at_zero, Ed25519, Group, Secp256k1};
use crate::session::{decode, encode, Inbox, Machine, Outbox, Step};
use crate::share::KeyShare;
use crate::DerivationPath;
use crate::{ChainSeed, Secret32};
use crate::{KeyId, PartyId, Scheme, Threshold};

const CONTEXT_TAG: &[u8] = b"shardvault/hd/v1";
const POK_TAG: &[u8] = b"shardvault/hd/v1/pok";

/// One party's result of hardened derivation for one path: its tweak share
/// `τ_k` (secret) and the public data every party agreed on. Cache it per
/// (key, path), sealed like a share; it survives refresh (docs/HD-DERIVATION.md,
/// "Properties"). Encoded by [`HardenedTweak::to_bytes`], which
/// [`HardenedTweak::from_bytes`] validates.
#[derive(Clone, Serialize, Deserialize)]
pub struct HardenedTweak {
    /// The key it belongs to.
    pub key_id: KeyId,
    /// The key's scheme.
    pub scheme: Scheme,
    /// The party holding `tau`.
    pub party: PartyId,
    /// The hardened path.
    pub path: DerivationPath,
    /// `X'`, the child public key (canonical encoding).
    pub public_key: Vec<u8>,
    /// `cc'`, the chain code for non-hardened levels below.
    pub chain_code: [u8; 32],
    /// `T_m = Σ_i Σ_j m^j·C_{i,j}` per party: child verifying share `V'_m = V_m + T_m`.
    pub verifying_tweaks: BTreeMap<PartyId, Vec<u8>>,
    /// `τ_k`, this party's share of the tweak.
    tau: Secret32,
}

impl fmt::Debug for HardenedTweak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HardenedTweak")
            .field("key_id", &self.key_id)
            .field("party", &self.party)
            .field("path", &self.path.to_string())
            .field("public_key", &hex::encode(&self.public_key))
            .field("tau", &"<redacted>")
            .finish()
    }
}

const TWEAK_MAGIC: &[u8; 4] = b"SVHT";
const TWEAK_FORMAT_VERSION: u16 = 1;

impl HardenedTweak {
    /// `τ_k`. Do not log it.
    pub fn expose_tau(&self) -> &[u8; 32] {
        self.tau.expose_secret()
    }

    /// Encodes the tweak (`SVHT` ‖ u16be version ‖ postcard). The bytes are
    /// secret: seal them before they leave memory.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut out = Zeroizing::new(TWEAK_MAGIC.to_vec());
        out.extend_from_slice(&TWEAK_FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&Zeroizing::new(
            postcard::to_stdvec(self).map_err(|e| Error::decode("hardened tweak", e))?,
        ));
        Ok(out)
    }

    /// Decodes a tweak and validates every point and scalar in it, so that
    /// signing may later read them without checking again.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |detail: &str| Error::decode("hardened tweak", detail);
        let rest = bytes
            .strip_prefix(TWEAK_MAGIC.as_slice())
            .ok_or_else(|| bad("not a shardvault hardened tweak (bad magic)"))?;
        let (version, body) = rest.split_at_checked(2).ok_or_else(|| bad("truncated"))?;
        if version != TWEAK_FORMAT_VERSION.to_be_bytes() {
            return Err(bad("unsupported format version"));
        }
        let (tweak, trailing): (HardenedTweak, _) =
            postcard::take_from_bytes(body).map_err(|e| Error::decode("hardened tweak", e))?;
        if !trailing.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let valid = match tweak.scheme {
            Scheme::EcdsaSecp256k1 | Scheme::SchnorrSecp256k1 => tweak.valid_in::<Secp256k1>(),
            Scheme::EddsaEd25519 => tweak.valid_in::<Ed25519>(),
        };
        if !valid || tweak.path.components().is_empty() || !tweak.path.normal_suffix().is_empty() {
            return Err(bad("invalid point, scalar or path"));
        }
        Ok(tweak)
    }

    fn valid_in<G: Group>(&self) -> bool {
        G::scalar_from_bytes(self.tau.expose_secret()).is_some()
            && std::iter::once(&self.public_key)
                .chain(self.verifying_tweaks.values())
                .all(|p| G::point_from_bytes(p).is_some())
            && self.verifying_tweaks.contains_key(&self.party)
    }
}

/// The derivation protocol for one party.
#[derive(Debug)]
pub struct HdMachine(HdInner);

enum HdInner {
    Secp(HdState<Secp256k1>),
    Ed(HdState<Ed25519>),
}

impl fmt::Debug for HdInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HdMachine(..)")
    }
}

struct HdState<G: Group> {
    ctx: Vec<u8>,
    key_id: KeyId,
    scheme: Scheme,
    me: PartyId,
    threshold: Threshold,
    path: DerivationPath,
    root: G::Point,
    verifying: BTreeMap<PartyId, G::Point>,
    /// `g_k(k)`, our own evaluation.
    own_y: G::Scalar,
}

impl<G: Group> Drop for HdState<G> {
    fn drop(&mut self) {
        self.own_y.zeroize();
    }
}

#[derive(Serialize, Deserialize)]
struct Commit {
    /// `C_{k,j}`, j = 0..t-1.
    commitments: Vec<Vec<u8>>,
    /// Schnorr proof of knowledge of `a_{k,0}`: `R`, `z`.
    proof_r: Vec<u8>,
    proof_z: [u8; 32],
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct TweakShareMessage {
    /// `y_{k→m} = g_k(m)`.
    y: [u8; 32],
}

/// Starts hardened derivation of `path` (hardened components only) for one
/// party holding `share`. Every party of the key must take part.
/// `rng` draws only the nonce of the proof of knowledge: the tweak itself is
/// deterministic.
pub fn start(
    share: &KeyShare,
    path: &DerivationPath,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<(HdMachine, Outbox), Error> {
    if path.components().is_empty() || !path.normal_suffix().is_empty() {
        return Err(Error::InvalidInput(format!(
            "hardened derivation takes a non-empty, all-hardened path; got {path}"
        )));
    }
    Ok(match share.scheme() {
        Scheme::EcdsaSecp256k1 | Scheme::SchnorrSecp256k1 => {
            let (state, out) = HdState::<Secp256k1>::start(share, path, rng)?;
            (HdMachine(HdInner::Secp(state)), out)
        }
        Scheme::EddsaEd25519 => {
            let (state, out) = HdState::<Ed25519>::start(share, path, rng)?;
            (HdMachine(HdInner::Ed(state)), out)
        }
    })
}

impl Machine for HdMachine {
    type Output = HardenedTweak;

    fn advance(self, inbox: Inbox) -> Result<Step<Self>, Error> {
        let tweak = match self.0 {
            HdInner::Secp(state) => state.finish(&inbox)?,
            HdInner::Ed(state) => state.finish(&inbox)?,
        };
        let mut agree_on = tweak.public_key.clone();
        agree_on.extend_from_slice(&tweak.chain_code);
        Ok(Step::Done { output: tweak, agree_on: Some(agree_on) })
    }
}

/// `ctx = "shardvault/hd/v1" ‖ scheme_id ‖ key_id ‖ enc(X) ‖ enc(path)`, length-prefixed.
pub(crate) fn context(scheme: Scheme, key_id: &KeyId, root: &[u8], path: &DerivationPath) -> Vec<u8> {
    let mut ctx = CONTEXT_TAG.to_vec();
    for field in [scheme.as_str().as_bytes(), key_id.as_bytes(), root, &path.encode()] {
        ctx.extend_from_slice(&(field.len() as u32).to_be_bytes());
        ctx.extend_from_slice(field);
    }
    ctx
}

fn parse_point<G: Group>(from: PartyId, bytes: &[u8]) -> Result<G::Point, Error> {
    G::point_from_bytes(bytes).ok_or_else(|| Error::misbehaved(from, "invalid curve point"))
}

impl<G: Group> HdState<G> {
    fn start(
        share: &KeyShare,
        path: &DerivationPath,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(Self, Outbox), Error> {
        let threshold = share.threshold();
        let me = share.party();
        let root_bytes = share.public_key();
        let root = G::point_from_bytes(root_bytes)
            .ok_or_else(|| Error::decode("key share", "public key is not a valid point"))?;
        let mut verifying = BTreeMap::new();
        for (party, bytes) in share.verifying_shares() {
            let point = G::point_from_bytes(bytes)
                .ok_or_else(|| Error::decode("key share", "verifying share is not a valid point"))?;
            verifying.insert(*party, point);
        }
        let ctx = context(share.scheme(), &share.key_id(), root_bytes, path);
        let mut coefficients = coefficients::<G>(share.chain_seed(), &ctx, threshold.threshold());
        let commitments: Vec<G::Point> = coefficients.iter().map(G::mul_base).collect();
        let a0 = coefficients.first().copied().ok_or_else(|| Error::Protocol("threshold below 1".into()))?;
        let (proof_r, proof_z) = prove::<G>(&ctx, me, &commitments, &a0, rng);
        let commit = Commit {
            commitments: commitments.iter().map(G::point_to_bytes).collect(),
            proof_r: G::point_to_bytes(&proof_r),
            proof_z: G::scalar_to_bytes(&proof_z),
        };
        let mut outbox = Outbox { broadcast: Some(encode(&commit)?), direct: BTreeMap::new() };
        let mut own_y = G::scalar_from_u64(0);
        for party in threshold.party_ids() {
            let y = eval_polynomial::<G>(&coefficients, party.get());
            if party == me {
                own_y = y;
            } else {
                let message = TweakShareMessage { y: G::scalar_to_bytes(&y) };
                outbox.direct.insert(party, encode(&message)?);
            }
        }
        coefficients.zeroize();
        let state = HdState {
            ctx,
            key_id: share.key_id(),
            scheme: share.scheme(),
            me,
            threshold,
            path: path.clone(),
            root,
            verifying,
            own_y,
        };
        Ok((state, outbox))
    }

    /// Step 4–6: verify everything, then sum up.
    fn finish(self, inbox: &Inbox) -> Result<HardenedTweak, Error> {
        let commitments = self.verified_commitments(inbox)?;
        let mut tau = self.tweak_share(inbox, &commitments)?;
        // X' = X + Σ_i C_{i,0}
        let child = commitments.values().filter_map(|c| c.first()).fold(self.root, |sum, c0| sum + *c0);
        if child == G::identity() {
            return Err(Error::Protocol("derived key is the identity; choose another path".into()));
        }
        // T_m = Σ_i Σ_j m^j·C_{i,j}; V'_m = V_m + T_m must interpolate to X'.
        let mut verifying_tweaks = BTreeMap::new();
        let mut child_verifying = Vec::new();
        for party in self.threshold.party_ids() {
            let t_m = commitments.values().fold(G::identity(), |sum, c| sum + eval_commitment::<G>(c, party.get()));
            let v_m = self
                .verifying
                .get(&party)
                .copied()
                .ok_or_else(|| Error::decode("key share", format!("no verifying share for party {party}")))?;
            child_verifying.push((party.get(), v_m + t_m));
            verifying_tweaks.insert(party, G::point_to_bytes(&t_m));
        }
        check_interpolation::<G>(&child_verifying, usize::from(self.threshold.threshold()), &child)?;
        let public_key = G::point_to_bytes(&child);
        let tweak = HardenedTweak {
            key_id: self.key_id,
            scheme: self.scheme,
            party: self.me,
            path: self.path.clone(),
            chain_code: child_chain_code(&public_key, &self.path),
            public_key,
            verifying_tweaks,
            tau: Secret32::new(G::scalar_to_bytes(&tau)),
        };
        tau.zeroize();
        Ok(tweak)
    }

    /// Every dealer's commitments `C_{i,·}`, after checking its proof of knowledge of `a_{i,0}`.
    fn verified_commitments(&self, inbox: &Inbox) -> Result<BTreeMap<PartyId, Vec<G::Point>>, Error> {
        let t = usize::from(self.threshold.threshold());
        let mut all = BTreeMap::new();
        for (from, payload) in &inbox.broadcast {
            let commit: Commit = decode(*from, payload)?;
            if commit.commitments.len() != t {
                let got = commit.commitments.len();
                return Err(Error::misbehaved(*from, format!("sent {got} commitments, expected {t}")));
            }
            let commitments =
                commit.commitments.iter().map(|c| parse_point::<G>(*from, c)).collect::<Result<Vec<_>, _>>()?;
            let r = parse_point::<G>(*from, &commit.proof_r)?;
            let z = G::scalar_from_bytes(&commit.proof_z)
                .ok_or_else(|| Error::misbehaved(*from, "invalid proof scalar"))?;
            if !verify::<G>(&self.ctx, *from, &commitments, &r, &z) {
                return Err(Error::misbehaved(*from, "proof of knowledge of the tweak secret does not verify"));
            }
            all.insert(*from, commitments);
        }
        Ok(all)
    }

    /// `τ_k = Σ_i y_{i→k}`, our own included; each `y` checked against its dealer's commitments.
    fn tweak_share(&self, inbox: &Inbox, commitments: &BTreeMap<PartyId, Vec<G::Point>>) -> Result<G::Scalar, Error> {
        let mut tau = self.own_y;
        for (from, payload) in &inbox.direct {
            let message: TweakShareMessage = decode(*from, payload)?;
            let y = G::scalar_from_bytes(&message.y)
                .ok_or_else(|| Error::misbehaved(*from, "invalid tweak share scalar"))?;
            let dealer = commitments.get(from).ok_or_else(|| Error::misbehaved(*from, "no commitments"))?;
            if G::mul_base(&y) != eval_commitment::<G>(dealer, self.me.get()) {
                tau.zeroize();
                return Err(Error::misbehaved(*from, "tweak share does not match its commitments"));
            }
            tau = tau + y;
        }
        Ok(tau)
    }
}

/// `X'` must be what the child verifying shares interpolate to (any t of them).
fn check_interpolation<G: Group>(shares: &[(u8, G::Point)], t: usize, expected: &G::Point) -> Result<(), Error> {
    // One verifying share per party: n ≥ t of them.
    let subset = shares.get(..t).ok_or(Error::Bug("fewer verifying shares than the threshold"))?;
    let xs: Vec<u8> = subset.iter().map(|(x, _)| *x).collect();
    let mut sum = G::identity();
    for (x, point) in subset {
        let lambda = lagrange_at_zero::<G>(*x, &xs).ok_or_else(|| Error::Protocol("duplicate party ids".into()))?;
        sum = sum + G::mul(point, &lambda);
    }
    if sum != *expected {
        return Err(Error::Protocol(
            "child verifying shares do not interpolate to the child key; the stored verifying shares are inconsistent"
                .into(),
        ));
    }
    Ok(())
}

/// `a_{k,j} = HashToScalar(HMAC-SHA512(c_k, ctx ‖ u8(j)))` for j < t.
pub(crate) fn coefficients<G: Group>(seed: &ChainSeed, ctx: &[u8], t: u8) -> Vec<G::Scalar> {
    (0..t).map(|j| coefficient::<G>(seed, ctx, j)).collect()
}

/// `a_{k,j} = HashToScalar(HMAC-SHA512(c_k, ctx ‖ u8(j)))`.
pub(crate) fn coefficient<G: Group>(seed: &ChainSeed, ctx: &[u8], j: u8) -> G::Scalar {
    let mut mac = Hmac::<Sha512>::new_from_slice(seed.expose_secret())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(ctx);
    mac.update(&[j]);
    let mut wide: [u8; 64] = mac.finalize().into_bytes().into();
    let scalar = G::scalar_from_wide(&wide);
    wide.zeroize();
    scalar
}

fn eval_polynomial<G: Group>(coefficients: &[G::Scalar], x: u8) -> G::Scalar {
    let x = G::scalar_from_u64(u64::from(x));
    coefficients.iter().rev().fold(G::scalar_from_u64(0), |acc, a| acc * x + *a)
}

fn challenge<G: Group>(ctx: &[u8], party: PartyId, commitments: &[G::Point], r: &G::Point) -> G::Scalar {
    let mut hash = Sha512::new();
    hash.update(POK_TAG);
    hash.update((ctx.len() as u32).to_be_bytes());
    hash.update(ctx);
    hash.update([party.get()]);
    for c in commitments {
        hash.update(G::point_to_bytes(c));
    }
    hash.update(G::point_to_bytes(r));
    G::scalar_from_wide(&hash.finalize().into())
}

fn prove<G: Group>(
    ctx: &[u8],
    party: PartyId,
    commitments: &[G::Point],
    secret: &G::Scalar,
    rng: &mut (impl RngCore + CryptoRng),
) -> (G::Point, G::Scalar) {
    let mut wide = [0u8; 64];
    rng.fill_bytes(&mut wide);
    let mut nonce = G::scalar_from_wide(&wide);
    wide.zeroize();
    let r = G::mul_base(&nonce);
    let e = challenge::<G>(ctx, party, commitments, &r);
    let z = nonce + e * *secret;
    nonce.zeroize();
    (r, z)
}

fn verify<G: Group>(ctx: &[u8], party: PartyId, commitments: &[G::Point], r: &G::Point, z: &G::Scalar) -> bool {
    let Some(c0) = commitments.first() else {
        return false;
    };
    let e = challenge::<G>(ctx, party, commitments, r);
    G::mul_base(z) == *r + G::mul(c0, &e)
}
