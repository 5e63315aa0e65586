// Message-format vectors from the chains' own SDKs, pinned in
// crates/chains/src/message.rs (tests) and docs/FORMATS.md ("Message formats").
// Run `node message-vectors.mjs` after `npm install` here; it prints one JSON object.
// Keys are fixed test secrets (never funds): 32 bytes of 0x01 (Ed25519 seed) and of 0x02 (secp256k1).
import { createKeyPairFromPrivateKeyBytes, getAddressFromPublicKey } from "@solana/kit";
import {
  compileOffchainMessageV0Envelope,
  signOffchainMessageEnvelope,
  offchainMessageApplicationDomain,
} from "@solana/offchain-messages";
import { makeSignDoc, serializeSignDoc, pubkeyToAddress, encodeSecp256k1Pubkey } from "@cosmjs/amino";
import { Secp256k1, sha256 } from "@cosmjs/crypto";
import { toBase64 } from "@cosmjs/encoding";
import { Ed25519PrivateKey } from "@aptos-labs/ts-sdk";

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const out = {};

// Solana: off-chain message v0, one signer, application domain all zero.
const ed = await createKeyPairFromPrivateKeyBytes(new Uint8Array(32).fill(1), true);
const signer = await getAddressFromPublicKey(ed.publicKey);
const edPublic = new Uint8Array(await crypto.subtle.exportKey("raw", ed.publicKey));
out.solana = { public_key: hex(edPublic), vectors: [] };
for (const text of ["Hello, shardvault", "Grüße, shardvault"]) {
  const envelope = compileOffchainMessageV0Envelope({
    version: 0,
    applicationDomain: offchainMessageApplicationDomain("11111111111111111111111111111111"),
    content: { format: /[^\x20-\x7e]/.test(text) ? 1 : 0, text },
    requiredSignatories: [{ address: signer }],
  });
  const signed = await signOffchainMessageEnvelope([ed], envelope);
  out.solana.vectors.push({ text, serialized: hex(envelope.content), signature: hex(signed.signatures[signer]) });
}

// Cosmos ADR-036, as Keplr builds and checks it (makeADR36AminoSignDoc / verifyADR36Amino):
// one sign/MsgSignData, empty chain id and memo, zero fee, account number and sequence.
const secret = new Uint8Array(32).fill(2);
const keypair = await Secp256k1.makeKeypair(secret);
const compressed = Secp256k1.compressPubkey(keypair.pubkey);
const address = pubkeyToAddress(encodeSecp256k1Pubkey(compressed), "cosmos");
const data = new TextEncoder().encode("Hello, shardvault");
const doc = makeSignDoc(
  [{ type: "sign/MsgSignData", value: { signer: address, data: toBase64(data) } }],
  { gas: "0", amount: [] },
  "",
  "",
  0,
  0,
);
const bytes = serializeSignDoc(doc);
const signature = await Secp256k1.createSignature(sha256(bytes), secret);
out.cosmos = {
  public_key: hex(compressed),
  address,
  data: hex(data),
  sign_doc: Buffer.from(bytes).toString("utf8"),
  digest: hex(sha256(bytes)),
  signature: hex(signature.toFixedLength().slice(0, 64)),
};

// Aptos AIP-62 full message, signed by the Aptos SDK's Ed25519 key.
const aptosKey = new Ed25519PrivateKey(new Uint8Array(32).fill(1));
const full = "APTOS\nmessage: Hello, shardvault\nnonce: 42";
out.aptos = {
  public_key: aptosKey.publicKey().toString().slice(2),
  full_message: full,
  signature: aptosKey.sign(new TextEncoder().encode(full)).toString().slice(2),
};
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
