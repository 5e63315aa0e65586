// CI only: splits and combines with Privy's shamir-secret-sharing, an
// independent implementation of HashiCorp Vault's Shamir share format, so
// crates/cli/tests/shamir_js.rs can check shardvault's shares against it.
//
//   node interop.mjs split PARTS THRESHOLD  stdin: the secret, base64, one line
//                                           stdout: one base64 share per line
//   node interop.mjs combine                stdin: one base64 share per line
//                                           stdout: the secret, base64, one line
import { split, combine } from 'shamir-secret-sharing';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const lines = Buffer.concat(chunks).toString('utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '');
const decode = (line) => new Uint8Array(Buffer.from(line, 'base64'));
const encode = (bytes) => Buffer.from(bytes).toString('base64');

const [command, ...args] = process.argv.slice(2);
try {
  if (command === 'split' && args.length === 2 && lines.length === 1) {
    const shares = await split(decode(lines[0]), Number(args[0]), Number(args[1]));
    process.stdout.write(shares.map(encode).join('\n') + '\n');
  } else if (command === 'combine' && args.length === 0) {
    process.stdout.write(encode(await combine(lines.map(decode))) + '\n');
  } else {
    throw new Error('usage: interop.mjs split PARTS THRESHOLD (secret on stdin) | interop.mjs combine (shares on stdin)');
  }
} catch (error) {
  process.stderr.write(`shamir-js: ${error.message}\n`);
  process.exit(1);
}
