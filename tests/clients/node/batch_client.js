#!/usr/bin/env node
// batch_client.js - the @google-cloud/storage SDK working in a larder batch,
// for tests/integration/test_batch_clients.py.
//
//   node batch_client.js ENDPOINT BUCKET BATCH COMMAND [ARGS...]
//
//   save NAME SRC                  file.save(bytes, {resumable: false}) - multipart
//   stream-upload NAME SRC CHUNK   createWriteStream({resumable: true, chunkSize}) - PUTs answered 308
//   download NAME DST              file.download({destination})
//
// The SDK has no per-call option for a request header, so X-Larder-Batch:
// BATCH (and the bearer token from $LARDER_TEST_TOKEN, see storage_client.js)
// go on through a request interceptor on the Storage object. JSON requests
// run it on each request; a resumable upload runs it once, on an empty
// request, and sends the headers it returns (customRequestOptions) with every
// request of the session: the POST that starts it and each PUT.
// Prints one JSON line; an error exits 1 with its message on stderr.
'use strict';

const fs = require('fs');
const {pipeline} = require('stream/promises');
const {Storage} = require('@google-cloud/storage');

async function run(endpoint, bucketName, batch, command, args) {
  const token = process.env.LARDER_TEST_TOKEN;
  if (!token || !batch) throw new Error('LARDER_TEST_TOKEN and BATCH are required');
  const storage = new Storage({apiEndpoint: endpoint, projectId: 'test', retryOptions: {autoRetry: false}});
  const added = {Authorization: 'Bearer ' + token, 'X-Larder-Batch': batch};
  storage.interceptors.push({request: reqOpts => ({...reqOpts, headers: {...reqOpts.headers, ...added}})});
  const [name, path, chunk] = args;
  const file = storage.bucket(bucketName).file(name);
  if (command === 'save') {
    await file.save(fs.readFileSync(path), {resumable: false});
  } else if (command === 'stream-upload') {
    await pipeline(fs.createReadStream(path),
      file.createWriteStream({resumable: true, chunkSize: Number(chunk)}));
  } else if (command === 'download') {
    await file.download({destination: path});
    return {downloaded: path};
  } else {
    throw new Error('unknown command ' + command);
  }
  return {name: file.metadata.name, size: Number(file.metadata.size)};
}

const [endpoint, bucket, batch, command, ...args] = process.argv.slice(2);
run(endpoint, bucket, batch, command, args).then(
  result => process.stdout.write(JSON.stringify(result) + '\n'),
  err => {
    const status = err && (err.code || (err.response && err.response.status));
    process.stderr.write('batch_client error' + (status ? ' (status ' + status + ')' : '') + ': ' +
      (err && err.stack ? err.stack : String(err)) + '\n');
    process.exit(1);
  });
