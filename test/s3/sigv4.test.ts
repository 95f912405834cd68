import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import { decodeChunked } from "../../src/s3/chunked.js";
import {
  chunkSignature,
  expectedSignature,
  parseSignature,
  sha256Hex,
  signingKey,
  type SignedRequest,
} from "../../src/s3/sigv4.js";

// The examples of AWS's "Signature Calculations for the Authorization Header" and "Transferring Payload in
// Multiple Chunks" pages: whoever signs like AWS must get these exact signatures.
const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AT = Date.UTC(2013, 4, 24);

test("a GET with a Range header signs as AWS's example does", () => {
  const headers = {
    host: "examplebucket.s3.amazonaws.com",
    range: "bytes=0-9",
    "x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "x-amz-date": "20130524T000000Z",
    authorization:
      "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," +
      "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date," +
      "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
  };
  const signed = parseSignature(headers, [], AT) as SignedRequest;
  assert.equal(signed.accessKeyId, "AKIAIOSFODNN7EXAMPLE");
  const want = expectedSignature({ method: "GET", rawPath: "/test.txt", query: [], headers }, signed, SECRET);
  assert.equal(want, signed.signature);
});

test("a request more than 15 minutes off the clock is RequestTimeTooSkewed; an unsigned one is anonymous", () => {
  const headers = {
    host: "h",
    "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
    "x-amz-date": "20130524T000000Z",
    authorization:
      "AWS4-HMAC-SHA256 Credential=A/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=00",
  };
  assert.throws(() => parseSignature(headers, [], AT + 16 * 60_000), { code: "RequestTimeTooSkewed" });
  assert.ok(parseSignature(headers, [], AT + 14 * 60_000));
  assert.equal(parseSignature({ host: "h" }, [], AT), undefined);
});

test("a presigned URL past its expiry is AccessDenied", () => {
  const query: [string, string][] = [
    ["X-Amz-Algorithm", "AWS4-HMAC-SHA256"],
    ["X-Amz-Credential", "A/20130524/us-east-1/s3/aws4_request"],
    ["X-Amz-Date", "20130524T000000Z"],
    ["X-Amz-Expires", "60"],
    ["X-Amz-SignedHeaders", "host"],
    ["X-Amz-Signature", "00"],
  ];
  assert.ok(parseSignature({ host: "h" }, query, AT + 59_000));
  assert.throws(() => parseSignature({ host: "h" }, query, AT + 61_000), { code: "AccessDenied" });
});

test("aws-chunked: each chunk's signature chains from the seed, as in AWS's example", async () => {
  const key = signingKey(SECRET, "20130524", "us-east-1");
  const signed = { amzDate: "20130524T000000Z", scope: "20130524/us-east-1/s3/aws4_request" };
  const seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
  const first = Buffer.alloc(65536, "a");
  const second = Buffer.alloc(1024, "a");
  const s1 = chunkSignature(key, signed, seed, sha256Hex(first));
  assert.equal(s1, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648");
  const s2 = chunkSignature(key, signed, s1, sha256Hex(second));
  assert.equal(s2, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497");
  const s3 = chunkSignature(key, signed, s2, sha256Hex(""));
  assert.equal(s3, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9");
  const body = Buffer.concat([
    Buffer.from(`10000;chunk-signature=${s1}\r\n`),
    first,
    Buffer.from(`\r\n400;chunk-signature=${s2}\r\n`),
    second,
    Buffer.from(`\r\n0;chunk-signature=${s3}\r\n\r\n`),
  ]);
  // Delivered in awkward pieces: headers and data split anywhere.
  const pieces = async function* (): AsyncGenerator<Buffer> {
    for (let i = 0; i < body.length; i += 777) yield body.subarray(i, i + 777);
  };
  const out: Buffer[] = [];
  for await (const b of decodeChunked(pieces(), { key, signed, seed }, new Map())) out.push(b);
  assert.ok(Buffer.concat(out).equals(Buffer.concat([first, second])));

  const tampered = Buffer.from(body);
  tampered[200] = 0x62;
  await assert.rejects(
    (async () => {
      for await (const _ of decodeChunked(Readable.from([tampered]), { key, signed, seed }, new Map()))
        void _;
    })(),
    { code: "SignatureDoesNotMatch" },
  );
});

test("aws-chunked unsigned with a trailer: the trailer is read", async () => {
  const trailers = new Map<string, string>();
  const body = Buffer.from("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n");
  const out: Buffer[] = [];
  for await (const b of decodeChunked(Readable.from([body]), undefined, trailers)) out.push(b);
  assert.equal(Buffer.concat(out).toString(), "hello");
  assert.equal(trailers.get("x-amz-checksum-crc32"), "NhCmhg==");
});
