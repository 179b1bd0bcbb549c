// amqplib's own pattern from issue 10: publish until the channel says its buffer is full,
// then close the connection. amqplib writes connection.close at once, ahead of the
// content frames still in its buffer, so the broker reads content after it has answered
// close-ok. Prints one JSON line: {"rounds": N, "published": [...]}; exits 1 on an error
// (a reset shows up as "write EPIPE" or "read ECONNRESET").
// Usage: node close_while_publishing.js URL QUEUE ROUNDS
'use strict';
const amqp = require('amqplib/callback_api');

const [url, queue, rounds] = [process.argv[2], process.argv[3], Number(process.argv[4])];
const body = Buffer.alloc(1024, 'x');
const published = [];

function fail(what, err) {
  console.error(`${what}: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
}

function round(i) {
  if (i === rounds) {
    console.log(JSON.stringify({ rounds: i, published }));
    return;
  }
  amqp.connect(url, (err, conn) => {
    if (err) return fail('connect', err);
    conn.on('error', (e) => fail('connection error', e));
    conn.createChannel((err, ch) => {
      if (err) return fail('channel', err);
      ch.assertQueue(queue, { durable: false }, (err) => {
        if (err) return fail('queue.declare', err);
        let n = 1;
        while (ch.sendToQueue(queue, body)) n++;  // the last one is buffered too
        published.push(n);
        conn.close((err) => {
          if (err) return fail('close', err);
          round(i + 1);
        });
      });
    });
  });
}

round(0);
