// A WhatsApp bot as a tenant writes it with whatsapp-api-js, started by the receiver's tests
// (tests/receiver/test_bots.py) as the instance behind the receiver.
//
//   BOT_APP_SECRET=... BOT_WEBHOOK_PATH=/agents/<id>/whatsapp node bot.mjs
//
// It listens on 127.0.0.1 (an ephemeral port), serves its webhook path with the library's
// node:http middleware, answers 200 on any other path (another instance), and prints one
// JSON line per thing the test checks: {"listening": port} first, then "message" and
// "status" for what the library's handlers received, and "request" for every POST (path,
// the answer it got, the body).
import { createServer } from "node:http";
import { WhatsAppAPI } from "whatsapp-api-js/middleware/node-http";

const path = process.env.BOT_WEBHOOK_PATH;
const Whatsapp = new WhatsAppAPI({
  token: "EAAG-not-used",
  appSecret: process.env.BOT_APP_SECRET,
  webhookVerifyToken: "not-used",
});
const say = (line) => process.stdout.write(JSON.stringify(line) + "\n");

Whatsapp.on.message = ({ phoneID, from, message, name }) => {
  say({ kind: "message", phoneID, from, name, message });
};
Whatsapp.on.status = ({ phoneID, phone, status, id, timestamp, error }) => {
  say({ kind: "status", phoneID, phone, status, id, timestamp, error: error ?? null });
};

const server = createServer(async (request, response) => {
  if (request.method === "POST" && request.url === path) {
    response.statusCode = await Whatsapp.handle_post(request);
    say({ kind: "request", path: request.url, status: response.statusCode });
    response.end();
    return;
  }
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  say({ kind: "request", path: request.url, status: 200, body: Buffer.concat(chunks).toString() });
  response.statusCode = 200;
  response.end();
});
server.listen(0, "127.0.0.1", () => say({ listening: server.address().port }));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
