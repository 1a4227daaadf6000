// An oidc-provider server for tests, configured by the Go package
// oidcprovider through one JSON environment variable, OIDCP_CONFIG:
//
//   {"tools": "<dir with node_modules/oidc-provider>", "port": 41234,
//    "issuer": "http://127.0.0.1:41234",
//    "client": {"client_id": "…", "client_secret": "…", "redirect_uris": ["…"]},
//    "scopes": ["openid", "offline_access", "…"], "accessTokenTTL": 60}
//
// Every code and token the server stores is written, one per line, to file
// descriptor 3, so that the Go side can register it with logcheck. Its own
// output names requests by method, path and status only: no query, no body.

import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { writeSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(process.env.OIDCP_CONFIG);
const require = createRequire(join(config.tools, 'package.json'));
const { default: Provider } = await import(pathToFileURL(require.resolve('oidc-provider')));

// Models whose ids are the values handed to the client (opaque format).
const credentials = new Set(['AuthorizationCode', 'AccessToken', 'RefreshToken']);

// The default development adapter keeps everything in one LRU of 1000
// entries and evicts the oldest grants under load; this one keeps
// everything until the process ends. Expiry needs no bookkeeping here: the
// models check exp themselves when they are found.
const store = new Map(); // "Model:id" → payload
const grants = new Map(); // grantId → Set of "Model:id"
const sessionUids = new Map(); // session uid → session id

class MapAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload) {
    const key = this.key(id);
    store.set(key, payload);
    if (payload.grantId) {
      if (!grants.has(payload.grantId)) grants.set(payload.grantId, new Set());
      grants.get(payload.grantId).add(key);
    }
    if (this.model === 'Session') sessionUids.set(payload.uid, id);
    if (credentials.has(this.model)) writeSync(3, `${id}\n`);
  }

  async find(id) { return store.get(this.key(id)); }

  async findByUid(uid) {
    const id = sessionUids.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode() { return undefined; } // no device flow

  async consume(id) {
    const payload = store.get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    for (const key of grants.get(grantId) ?? []) store.delete(key);
    grants.delete(grantId);
  }
}

const day = 24 * 60 * 60;

const escapeHTML = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const provider = new Provider(config.issuer, {
  adapter: MapAdapter,
  clients: [{
    ...config.client,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    // client_secret_post is accepted too: oidc-provider takes either
    // secret-based method for a client registered with one of them.
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  scopes: config.scopes,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
  },
  pkce: { required: () => true },
  // Every refresh answers a new refresh token; presenting a used one again
  // revokes the grant (oidc-provider's reuse detection).
  rotateRefreshToken: true,
  // A refresh token for every authorization, with or without
  // offline_access, and one that outlives the provider session.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  // The default error page shows the request's state too; this one shows
  // only the error, so that a test failure quoting it names no state.
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><head><title>oidc-provider error</title></head>`
      + `<body><p>${escapeHTML(out.error)}: ${escapeHTML(out.error_description)}</p></body></html>`;
  },
  ttl: {
    AccessToken: config.accessTokenTTL,
    AuthorizationCode: 60,
    IdToken: config.accessTokenTTL,
    Interaction: 10 * 60,
    Session: day,
    Grant: 14 * day,
    RefreshToken: 14 * day,
  },
});

provider.use(async (ctx, next) => {
  await next();
  console.log(`${ctx.method} ${ctx.path} ${ctx.status}`);
});
provider.on('server_error', (ctx, err) => console.error(`server_error ${ctx.method} ${ctx.path}: ${err.message}`));
provider.on('grant.revoked', () => console.log('grant revoked'));

provider.listen(config.port, '127.0.0.1', () => console.log(`oidc-provider listening at ${config.issuer}`));
