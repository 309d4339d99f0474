// Subscribes to new blocks with cosmjs, as a dapp would, through whatever serves the
// given websocket; run by the Rust test tests/gateway/cosmjs.rs, which starts the node
// and the gateway and produces the blocks.
//
//   node subscribe_new_block.mjs <ws url> <blocks>
//
// Prints `subscribed` once the server has acknowledged the subscription (so the Rust
// test knows a block produced from then on must arrive), then one JSON line
// {"height": h, "chainId": c} per block received, and disconnects and exits 0 after
// <blocks> blocks. Exits non-zero, saying why on stderr, on any error or after 20 s.
import { Tendermint37Client, WebsocketClient } from '@cosmjs/tendermint-rpc';

const [url, count] = process.argv.slice(2);
const wanted = Number(count);
if (!url || !Number.isInteger(wanted) || wanted < 1) {
  console.error('usage: node subscribe_new_block.mjs <ws url> <blocks>');
  process.exit(2);
}
const TIMEOUT_MS = 20_000;
const CONNECT_MS = 5_000;

function fail(why) {
  console.error(`subscribe_new_block: ${why instanceof Error ? why.stack : String(why)}`);
  process.exit(1);
}

setTimeout(() => fail(`timed out after ${TIMEOUT_MS} ms`), TIMEOUT_MS);
process.on('unhandledRejection', fail);

// cosmjs hands subscriptions no acknowledgement: the stream only ever carries events.
// Its WebsocketClient offers subclasses `responseForRequestId` for this, so the
// subscription itself (request, id matching, decoding) stays entirely cosmjs's own.
class AcknowledgingClient extends WebsocketClient {
  acks = [];

  listen(request) {
    // Registered before the stream is listened to, which is when the request is sent.
    this.acks.push(this.responseForRequestId(request.id));
    return super.listen(request);
  }
}

// cosmjs appends `/websocket` to its endpoint; accept the full path as well.
const endpoint = url.replace(/\/websocket\/?$/, '');
const rpc = new AcknowledgingClient(endpoint, fail);
const client = Tendermint37Client.create(rpc);
// A refused connection or upgrade is no error to cosmjs, which dials again and again:
// give it a deadline of its own, so such a run says so rather than merely timing out.
const unconnected = setTimeout(
  () => fail(`no websocket connection to ${endpoint}/websocket within ${CONNECT_MS} ms`),
  CONNECT_MS,
);
rpc.connected().then(() => clearTimeout(unconnected));

let seen = 0;
const done = new Promise((resolve, reject) => {
  const subscription = client.subscribeNewBlock().subscribe({
    next: (block) => {
      const { height, chainId } = block.header;
      console.log(JSON.stringify({ height, chainId }));
      seen += 1;
      if (seen === wanted) {
        subscription.unsubscribe();
        resolve();
      }
    },
    error: (e) => reject(new Error(`subscription failed: ${e instanceof Error ? e.message : e}`)),
    complete: () => reject(new Error(`the stream ended after ${seen} of ${wanted} blocks`)),
  });
});

const ack = await rpc.acks[0];
if (ack.error) {
  fail(`subscribe refused: ${JSON.stringify(ack.error)}`);
}
console.log('subscribed');

await done;
client.disconnect();
// cosmjs 0.39's ReconnectingSocket takes its own disconnect for a dropped connection and
// dials again 100 ms later, which would keep this process alive: leave before it does.
process.exit(0);
