// A Socket.IO client double for the JS client's unit tests: the test plays
// the server (apply.test.mjs, groups.test.mjs).
import assert from "node:assert/strict";

/** A Socket.IO client double: the test plays the server. */
export class FakeSocket {
  constructor() {
    this.handlers = new Map();
    this.requests = []; // [{event, payload, ack}]
    this.connected = false;
    this.active = true;
    this.io = { on() {} };
  }
  on(event, fn) {
    this.handlers.set(event, [...(this.handlers.get(event) ?? []), fn]);
  }
  fire(event, ...args) {
    for (const fn of this.handlers.get(event) ?? []) fn(...args);
  }
  timeout() {
    return { emit: (event, payload, ack) => this.requests.push({ event, payload, ack }) };
  }
  emit(event, payload) {
    this.requests.push({ event, payload, ack: null });
  }
  connect() {}
  disconnect() {
    this.connected = false;
    this.active = false;
  }
  // -- the server's side
  serverConnect() {
    this.connected = true;
    this.fire("connect");
  }
  serverDrop() {
    this.connected = false;
    this.fire("disconnect", "transport close");
  }
  /** Answer a request (as Socket.IO calls an ack with a timeout) and let the client run. */
  async reply(request, ack) {
    request.ack(null, ack);
    await new Promise((resolve) => setImmediate(resolve));
  }
  /** The oldest unanswered request named `event`. */
  take(event) {
    const i = this.requests.findIndex((r) => r.event === event && r.ack);
    assert.notEqual(i, -1, `no ${event} request; got ${this.requests.map((r) => r.event)}`);
    return this.requests.splice(i, 1)[0];
  }
}
