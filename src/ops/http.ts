import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { errorCode, StartupError } from "../config/errors.ts";
import type { FriendMetrics } from "./metrics.ts";

export interface OpsServerOptions {
  host: string;
  port: number;
  /** True once the gateway is ready and the database answers. */
  healthy: () => boolean;
  metrics: FriendMetrics;
  logger: Logger;
}

/** `/healthz` and `/metrics`, for Docker's HEALTHCHECK and Prometheus. Off unless FRIEND_HTTP_PORT is set. */
export async function startOpsServer(options: OpsServerOptions): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
    } else if (path === "/healthz") {
      const ok = options.healthy();
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok\n" : "not ready\n");
    } else if (path === "/metrics") {
      options.metrics.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": options.metrics.registry.contentType }).end(text),
        (err: unknown) => {
          options.logger.error({ err }, "metrics failed");
          res.writeHead(500).end();
        },
      );
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => reject(listenError(err, options)));
    server.listen(options.port, options.host, () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  const url = `http://${address.includes(":") ? `[${address}]` : address}:${port}`;
  options.logger.info({ url }, "health and metrics endpoint listening");
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Names the variable to fix when the endpoint cannot listen. */
function listenError(err: Error, { host, port }: { host: string; port: number }): StartupError {
  const code = errorCode(err);
  if (code === "EADDRINUSE") return new StartupError(`FRIEND_HTTP_PORT=${port}: the port is already in use on ${host}. Choose another port, or stop what uses it.`, { cause: err });
  if (code === "EACCES") return new StartupError(`FRIEND_HTTP_PORT=${port}: not allowed to listen on this port (ports below 1024 need privileges). Choose a port above 1024.`, { cause: err });
  return new StartupError(`FRIEND_HTTP_HOST=${host}: cannot listen on this address (${err.message}). Use an address of this machine, e.g. 127.0.0.1 or 0.0.0.0.`, { cause: err });
}
