"use strict";
// The stand-in for the `electron` module, as little of it as electron-updater touches on a
// download-only flow (read from node_modules/electron-updater/out):
//   ElectronAppAdapter    app.getVersion/getName/getPath/isPackaged/whenReady/once("quit"),
//                         process.resourcesPath (where app-update.yml is read from);
//   electronHttpExecutor  session.fromPartition and net.request (Chromium's network stack in
//                         a real app; here Node's http, behind the same ClientRequest surface:
//                         "response"/"redirect"/"error" events, end/abort/followRedirect);
//   BaseUpdater           autoUpdater.emit("before-quit-for-update") (install only, unused).
// Everything else of electron-updater runs as it is: provider, channel file parsing, the
// differential downloader, the multipart/byteranges splitter and the sha512 check.

const { EventEmitter } = require("events");
const http = require("http");
const https = require("https");
const path = require("path");

const settings = {
  name: "Sample App",
  version: "0.0.0",
  home: null,
};

/** Every HTTP exchange, for the harness's report: method, path, range, status, bytes. */
const exchanges = [];

function configure(values) {
  Object.assign(settings, values);
}

class App extends EventEmitter {
  get isPackaged() {
    return true;
  }
  getVersion() {
    return settings.version;
  }
  getName() {
    return settings.name;
  }
  getPath(name) {
    return path.join(settings.home, name);
  }
  getAppPath() {
    return path.join(settings.home, "app");
  }
  isReady() {
    return true;
  }
  whenReady() {
    return Promise.resolve();
  }
  quit() {
    throw new Error("the harness never quits the app (download only)");
  }
  relaunch() {
    throw new Error("the harness never relaunches the app (download only)");
  }
}

const agents = {
  "http:": new http.Agent({ keepAlive: true }),
  "https:": new https.Agent({ keepAlive: true }),
};

/** Electron's ClientRequest, as far as builder-util-runtime's HttpExecutor uses it. */
class ClientRequest extends EventEmitter {
  constructor(options) {
    super();
    const protocol = options.protocol || "https:";
    this.redirectMode = options.redirect || "follow";
    this.nodeOptions = {
      protocol,
      hostname: options.hostname,
      port: options.port,
      path: options.path || "/",
      method: (options.method || "GET").toUpperCase(),
      headers: { ...(options.headers || {}) },
      agent: agents[protocol],
    };
    this.inner = null;
  }

  setHeader(name, value) {
    this.nodeOptions.headers[name] = value;
  }

  end(data) {
    this.send(this.nodeOptions, data);
  }

  send(nodeOptions, data) {
    const transport = nodeOptions.protocol === "https:" ? https : http;
    const headers = nodeOptions.headers;
    const range = Object.keys(headers).find(k => k.toLowerCase() === "range");
    const exchange = {
      method: nodeOptions.method,
      path: nodeOptions.path,
      range: range == null ? null : String(headers[range]),
      status: null,
      contentType: null,
      bytes: 0,
    };
    exchanges.push(exchange);
    const req = transport.request(nodeOptions, response => {
      exchange.status = response.statusCode;
      exchange.contentType = response.headers["content-type"] || null;
      const location = response.headers.location;
      if (response.statusCode >= 300 && response.statusCode < 400 && location != null) {
        response.resume();
        this.pendingRedirect = new URL(location, `${nodeOptions.protocol}//${nodeOptions.hostname}:${nodeOptions.port || ""}`);
        if (this.redirectMode === "manual") {
          this.emit("redirect", response.statusCode, nodeOptions.method, this.pendingRedirect.href, response.headers);
        } else if (this.redirectMode === "error") {
          this.emit("error", new Error(`redirect to ${location} refused (redirect: "error")`));
        } else {
          this.followRedirect();
        }
        return;
      }
      // The consumer attaches first (it may pipe), then the byte counter.
      this.emit("response", response);
      response.on("data", chunk => {
        exchange.bytes += typeof chunk === "string" ? Buffer.byteLength(chunk) : chunk.length;
      });
    });
    req.on("error", error => this.emit("error", error));
    this.inner = req;
    req.end(data);
  }

  followRedirect() {
    const target = this.pendingRedirect;
    this.pendingRedirect = null;
    if (target == null) {
      throw new Error("followRedirect() without a pending redirect");
    }
    this.send(
      {
        ...this.nodeOptions,
        protocol: target.protocol,
        hostname: target.hostname,
        port: target.port,
        path: target.pathname + target.search,
        agent: agents[target.protocol],
      },
      undefined,
    );
  }

  abort() {
    if (this.inner != null) {
      this.inner.destroy();
    }
    this.emit("abort");
  }
}

const net = {
  request(options) {
    if (typeof options === "string") {
      const url = new URL(options);
      options = { protocol: url.protocol, hostname: url.hostname, port: url.port, path: url.pathname + url.search };
    }
    return new ClientRequest(options);
  },
};

const session = {
  fromPartition() {
    return {};
  },
};

class Notification {
  show() {}
}

module.exports = {
  app: new App(),
  autoUpdater: new EventEmitter(),
  net,
  session,
  Notification,
  // harness-only
  configure,
  exchanges,
};
