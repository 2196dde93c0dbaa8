// The REST API as the console uses it: same origin, signed in by the
// session cookie (HttpOnly: no script here ever sees a secret).
import { t } from "./i18n.js";

export const prefix = "/api/v1";

export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export async function call(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(prefix + path, opts);
  } catch (e) {
    throw new APIError(0, "unavailable", String(e));
  }
  if (!resp.ok) {
    let err = { code: "internal", message: `HTTP ${resp.status}` };
    try {
      err = await resp.json();
    } catch {}
    if (resp.status === 401) onUnauthorized();
    throw new APIError(resp.status, err.code, err.message);
  }
  return resp.json();
}

export const get = (p) => call("GET", p);
export const post = (p, b) => call("POST", p, b);
export const del = (p) => call("DELETE", p);

// objectPath is the API path of an object, each key segment escaped.
export function objectPath(bucket, key) {
  return `/buckets/${encodeURIComponent(bucket)}/objects/` + key.split("/").map(encodeURIComponent).join("/");
}

// upload PUTs a file with progress reports (fetch cannot report upload
// progress; XMLHttpRequest can).
export function upload(bucket, key, file, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open("PUT", prefix + objectPath(bucket, key));
    x.withCredentials = true;
    if (file.type) x.setRequestHeader("Content-Type", file.type);
    x.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded, e.total);
    x.onload = () => {
      let body = {};
      try {
        body = JSON.parse(x.responseText);
      } catch {}
      if (x.status >= 200 && x.status < 300) resolve(body);
      else {
        if (x.status === 401) onUnauthorized();
        reject(new APIError(x.status, body.code, body.message || `HTTP ${x.status}`));
      }
    };
    x.onerror = () => reject(new APIError(0, "unavailable", t("objects.connectionLost")));
    x.send(file);
  });
}

// logSocket opens the live log of one task of a job; with metrics, the
// job's resource samples come on it too (messages with a "metric" field).
export function logSocket(jobID, task, metrics) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return new WebSocket(`${proto}//${location.host}${prefix}/jobs/${encodeURIComponent(jobID)}/logs/ws?task=${task}&follow=1${metrics ? "&metrics=1" : ""}`);
}
