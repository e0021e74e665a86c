// `meshport demo`: real SOFA RPC (Bolt) and Dubbo calls from the npm SDKs, watched through `meshport tap`.

import { client as sofaClient, server as sofaServer } from 'sofa-rpc-node';
import dubboProtocol from 'dubbo-remoting';
import { Style } from './format';
import type { Io } from './io';
import { startTap } from './tap';

const quietLogger = { info() {}, warn() {}, error() {}, debug() {} };

/**
 * Starts a provider per protocol on loopback, puts a tap in front of it, and has a consumer call through the tap:
 * a successful call and one the provider rejects. Every frame both ways is printed as `meshport tap` prints it.
 */
export async function runDemo(io: Io, colour: boolean): Promise<number> {
  const s = new Style(colour);
  const say = (text: string) => io.stdout.write(`\n${s.bold(text)}\n`);
  for (const protocol of [{ name: 'SOFA RPC over Bolt', impl: undefined }, { name: 'Dubbo', impl: dubboProtocol }]) {
    say(`== ${protocol.name}: consumer -> meshport tap -> provider (sofa-rpc-node${protocol.impl ? ' + dubbo-remoting' : ''})`);
    // sofa-rpc-node picks Bolt when no protocol is given (an explicit undefined would override its default).
    const withProtocol = protocol.impl ? { protocol: protocol.impl } : {};
    const provider = new sofaServer.RpcServer({ logger: quietLogger, port: 0, appName: 'demo-provider', ...withProtocol });
    provider.addService(
      { interfaceName: 'com.example.EchoService', version: '1.0' },
      {
        async echo(text: string) {
          return `echo: ${text}`;
        },
        async fail() {
          throw new Error('the provider refused this call');
        },
      },
    );
    await provider.start();
    const tap = await startTap(
      { listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: provider.publishPort }, colour },
      io,
    );
    const rpc = new sofaClient.RpcClient({ logger: quietLogger, ...withProtocol });
    try {
      const consumer = rpc.createConsumer({
        interfaceName: 'com.example.EchoService',
        version: '1.0',
        serverHost: `127.0.0.1:${tap.address.port}`,
      });
      await consumer.ready();
      const reply = await consumer.invoke('echo', ['hello meshport'], { responseTimeout: 3000 });
      io.stdout.write(`${s.green('consumer got:')} ${JSON.stringify(reply)}\n`);
      try {
        await consumer.invoke('fail', [], { responseTimeout: 3000 });
      } catch (err) {
        io.stdout.write(`${s.yellow('consumer got an error, as expected:')} ${(err as Error).message.split('\n')[0]}\n`);
      }
      // Let the tap print the last response before the connections close.
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      await rpc.close();
      await tap.close();
      await provider.close();
    }
  }
  say('Decode any frame yourself: npx meshport decode --hex <hex>   (see README)');
  return 0;
}
