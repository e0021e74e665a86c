// `hijack` suite: the server the app means to reach (198.18.0.1:PORT in the bench's namespace). Echoes every byte.
// argv: HOST PORT. Prints {"ready":"echo"} when listening; exits when stdin ends (the bench closes it).

import * as net from 'node:net';

const [host, port] = process.argv.slice(2);
const server = net.createServer({ noDelay: true }, (socket) => {
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk) => socket.write(chunk));
});
server.listen({ host, port: Number(port), backlog: 4096 }, () => {
  process.stdout.write(`${JSON.stringify({ ready: 'echo', pid: process.pid })}\n`);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
