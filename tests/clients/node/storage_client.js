#!/usr/bin/env node
// storage_client.js - drives the real @google-cloud/storage SDK for
// tests/integration/test_node.py. One invocation performs one operation so the
// Python side can check the result of each step (sha256 of files it wrote,
// the emulator's request log) before the next.
//
//   node storage_client.js ENDPOINT BUCKET COMMAND [ARGS...]
//
//   save NAME SRC                  file.save(bytes, {resumable: false}) - multipart
//   stream-upload NAME SRC CHUNK   createWriteStream({resumable: true, chunkSize})
//   download NAME DST              file.download({destination}) (validates md5/crc32c)
//   read-range NAME START END DST  createReadStream({start, end}) - inclusive end
//   list PREFIX                    bucket.getFiles({prefix}), prints the names
//   metadata NAME                  file.getMetadata()
//   delete NAME                    file.delete()
//   exists NAME                    file.exists()
//
// The bearer token comes from $LARDER_TEST_TOKEN. With a custom apiEndpoint
// the SDK sends no credentials at all, so a request interceptor adds it.
// Every result is one JSON line on stdout; any error exits 1 with its message
// (and HTTP status, if there was one) on stderr.
'use strict';

const fs = require('fs');
const {pipeline} = require('stream/promises');
const {Storage} = require('@google-cloud/storage');

function makeStorage(endpoint) {
  const token = process.env.LARDER_TEST_TOKEN;
  if (!token) throw new Error('LARDER_TEST_TOKEN is not set');
  const storage = new Storage({
    apiEndpoint: endpoint,
    projectId: 'test',
    // No silent retries: a request larder mangles must fail the test, not be
    // papered over by a second attempt.
    retryOptions: {autoRetry: false},
  });
  // The header goes in through an interceptor rather than an authClient:
  // 7.22's createWriteStream does not hand useAuthWithCustomEndpoint on to
  // its resumable upload, so with an authClient the chunked upload would go
  // out without credentials. Interceptors reach every request, JSON and
  // resumable alike.
  storage.interceptors.push({
    request: reqOpts => {
      reqOpts.headers = Object.assign({}, reqOpts.headers, {Authorization: 'Bearer ' + token});
      return reqOpts;
    },
  });
  return storage;
}

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function pickMeta(m) {
  return {name: m.name, size: Number(m.size), md5Hash: m.md5Hash, crc32c: m.crc32c,
    generation: m.generation, contentType: m.contentType, mediaLink: m.mediaLink,
    selfLink: m.selfLink};
}

async function main(argv) {
  const [endpoint, bucketName, command, ...args] = argv;
  if (!command) throw new Error('usage: storage_client.js ENDPOINT BUCKET COMMAND [ARGS...]');
  const bucket = makeStorage(endpoint).bucket(bucketName);
  switch (command) {
    case 'save': {
      const [name, src] = args;
      const file = bucket.file(name);
      await file.save(fs.readFileSync(src), {resumable: false, contentType: 'application/x-larder-test'});
      print(pickMeta(file.metadata));
      return;
    }
    case 'stream-upload': {
      const [name, src, chunk] = args;
      const file = bucket.file(name);
      await pipeline(fs.createReadStream(src),
        file.createWriteStream({resumable: true, chunkSize: Number(chunk), contentType: 'application/x-larder-res'}));
      print(pickMeta(file.metadata));
      return;
    }
    case 'download': {
      const [name, dst] = args;
      await bucket.file(name).download({destination: dst});
      print({downloaded: dst});
      return;
    }
    case 'read-range': {
      const [name, start, end, dst] = args;
      await pipeline(bucket.file(name).createReadStream({start: Number(start), end: Number(end)}),
        fs.createWriteStream(dst));
      print({downloaded: dst});
      return;
    }
    case 'list': {
      const [prefix] = args;
      const [files] = await bucket.getFiles({prefix});
      print({names: files.map(f => f.name), sizes: files.map(f => Number(f.metadata.size))});
      return;
    }
    case 'metadata': {
      const [metadata] = await bucket.file(args[0]).getMetadata();
      print(pickMeta(metadata));
      return;
    }
    case 'delete': {
      await bucket.file(args[0]).delete();
      print({deleted: args[0]});
      return;
    }
    case 'exists': {
      const [exists] = await bucket.file(args[0]).exists();
      print({exists});
      return;
    }
    default:
      throw new Error('unknown command ' + command);
  }
}

main(process.argv.slice(2)).catch(err => {
  const status = err && (err.code || (err.response && err.response.status));
  process.stderr.write('storage_client error' + (status ? ' (status ' + status + ')' : '') + ': ' +
    (err && err.stack ? err.stack : String(err)) + '\n');
  process.exit(1);
});
