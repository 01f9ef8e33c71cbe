/**
 * HTTP-CONNECT-mode tunnel, speaking exactly what kube-apiserver's egress
 * selector sends (§5): one connection per dial, the request
 * `CONNECT host:port HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, and only a 200
 * answer opens the tunnel. After that the proxy socket itself is the tunnel.
 *
 * One deliberate difference: kube-apiserver fails the dial when bytes beyond
 * the response head arrive in the same read. We keep them as the first tunnel
 * bytes (they are the remote's data; a pre-v0.34 server, or any server that
 * coalesces writes, produces exactly that), pushing them back onto the socket.
 */
import type net from 'node:net';
import type { ClientMetrics } from '../observability/client-metrics.ts';
import type { Logger } from '../observability/logger.ts';
import { ConnectionStatusGauge } from './client-instrumentation.ts';
import { ConnectResponseError, parseConnectResponseHead, readErrorBody, readResponseHead } from './connect-response.ts';
import { DialDeadline } from './dial-deadline.ts';
import { KonnectivityDialError } from './dial-error.ts';
import { describeTransport, openProxySocket } from './proxy-transport.ts';
import { TunnelBase } from './tunnel-base.ts';
import { CLOSE_TIMEOUT_MS, type DialOptions, type ProxyTransport } from './tunnel-options.ts';

export interface HttpConnectTunnelOptions {
  transport: ProxyTransport;
  logger: Logger;
  metrics: ClientMetrics;
  dialTimeoutMs: number;
}

/** The exact request bytes kube-apiserver sends. */
export function connectRequest(address: string): string {
  return `CONNECT ${address} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
}

/** A dial target must be a single request-target token; anything else could inject into the request. */
function isValidAuthority(address: string): boolean {
  return address.length > 0 && !/[\s\x00-\x1f\x7f]/.test(address);
}

export class HttpConnectTunnel extends TunnelBase<HttpConnectTunnelOptions> {
  readonly mode = 'http-connect' as const;
  private readonly sockets = new Set<net.Socket>();

  protected async open(network: string, address: string, options: DialOptions): Promise<net.Socket> {
    if (this.closed) throw new KonnectivityDialError('tunnelclosed', 'tunnel is closed', { address });
    if (network !== 'tcp') throw new KonnectivityDialError('unknown', 'protocol not supported', { address });
    if (!isValidAuthority(address)) throw new KonnectivityDialError('unknown', `invalid dial address ${JSON.stringify(address)}`, { address });
    const deadline = new DialDeadline({
      timeoutMs: options.timeoutMs ?? this.options.dialTimeoutMs,
      signal: options.signal,
      closeSignal: this.closeController.signal,
    });
    const { socket, readyEvent } = openProxySocket(this.options.transport);
    const status = new ConnectionStatusGauge(this.options.metrics, 'dialing');
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      status.clear();
    });
    try {
      await this.waitConnected(socket, readyEvent, deadline, address);
      socket.setNoDelay(true);
      socket.write(connectRequest(address));
      const { head, rest } = await readResponseHead(socket, deadline.signal).catch((err: unknown) => {
        throw this.responseFailure(err, deadline, address);
      });
      let response;
      try {
        response = parseConnectResponseHead(head);
      } catch (err) {
        throw this.responseFailure(err, deadline, address);
      }
      if (response.statusCode !== 200) {
        const body = await readErrorBody(socket, response, rest, deadline.signal);
        throw new KonnectivityDialError('endpoint', body ? `${response.statusLine}: ${body}` : response.statusLine, { address, httpStatus: response.statusCode });
      }
      if (rest.length > 0) socket.unshift(rest);
      status.set('ok');
      this.options.logger.v(3, 'dial succeeded', { address });
      return socket;
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      deadline.dispose();
    }
  }

  private waitConnected(socket: net.Socket, readyEvent: 'connect' | 'secureConnect', deadline: DialDeadline, address: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        socket.off(readyEvent, onReady);
        socket.off('error', onError);
        deadline.signal.removeEventListener('abort', onAbort);
      };
      const onReady = (): void => {
        cleanup();
        resolve();
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(new KonnectivityDialError('streamsetup', `cannot connect to proxy server ${describeTransport(this.options.transport)}: ${err.message}`, { address, cause: err }));
      };
      const onAbort = (): void => {
        cleanup();
        reject(deadline.failure(address));
      };
      socket.once(readyEvent, onReady);
      socket.once('error', onError);
      if (deadline.fired) onAbort();
      else deadline.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private responseFailure(err: unknown, deadline: DialDeadline, address: string): KonnectivityDialError {
    if (deadline.fired) return deadline.failure(address);
    if (err instanceof ConnectResponseError) {
      // A server that hangs up instead of answering is how upstream reports a DIAL_CLS from the agent.
      const code = err.kind === 'closed' || err.kind === 'socket' ? 'dialclosed' : 'unknown';
      return new KonnectivityDialError(code, err.message, { address, cause: err });
    }
    return new KonnectivityDialError('unknown', err instanceof Error ? err.message : String(err), { address, cause: err });
  }

  protected async shutdown(): Promise<void> {
    this.closeController.abort();
    const closed = [...this.sockets].map((socket) => new Promise<void>((resolve) => {
      if (socket.closed) {
        resolve();
        return;
      }
      socket.once('close', () => resolve());
      socket.end();
    }));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(closed), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_TIMEOUT_MS)))]);
    clearTimeout(timer);
    for (const socket of this.sockets) socket.destroy();
  }
}
