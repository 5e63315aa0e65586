// Writes the known-answer vectors of crates/shamir/tests/vectors/shamir-js.json:
// secrets split by Privy's shamir-secret-sharing (an independent
// implementation of HashiCorp Vault's share format), each share as hex.
// Run once by hand: `node tools/shamir-js/make-vectors.mjs > FILE`.
import { webcrypto } from 'node:crypto';
import { split } from 'shamir-secret-sharing';

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const random = (len) => webcrypto.getRandomValues(new Uint8Array(len));
const text = (s) => new TextEncoder().encode(s);

const cases = [
  [text('test'), 5, 3],
  [new Uint8Array([0]), 2, 2],
  [new Uint8Array([255]), 3, 2],
  [random(32), 3, 2],
  [random(32), 5, 5],
  [random(16), 20, 10],
  [random(4), 255, 2],
  [random(4), 255, 255],
  [random(100), 7, 4],
];

const vectors = [];
for (const [secret, parts, threshold] of cases) {
  const shares = await split(secret, parts, threshold);
  vectors.push({ parts, threshold, secret: hex(secret), shares: shares.map(hex) });
}
const note =
  'Made with tools/shamir-js/make-vectors.mjs by shamir-secret-sharing 0.0.4 (npm, Apache-2.0, Privy), ' +
  "an implementation of HashiCorp Vault's shamir share format written independently of shardvault. " +
  'Each share is hex: its y bytes, then its x byte. Any threshold of a vector\'s shares combine to its secret.';
process.stdout.write(JSON.stringify({ note, vectors }, null, 1) + '\n');
