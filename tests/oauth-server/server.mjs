// A real OAuth 2.0 / OpenID Connect authorization server for Switchyard's tests: the
// `oidc-provider` package, configured with one client per provider name the tests use.
// Interactions (login, consent) are approved at once for the test user, so a test can follow the
// authorization-code flow with a plain HTTP client. Prints `listening <issuer>` on stdout.
//
// Test hooks: GET /test/counts (grants issued by type, failed refreshes, grants revoked) and
// POST /test/revoke-grants (as if the user removed the app at the provider).
//
// Environment: CLIENTS (JSON: [{client_id, client_secret, redirect_uris, auth_method}]),
// ACCESS_TOKEN_TTL (seconds, default 3600), ROTATE_REFRESH_TOKENS ("true" makes refresh tokens
// single-use, as Zoom's are), LOGIN_FORM ("true": the login asks for an e-mail address in a form,
// and that address is the account: its ID token carries `email`, `email_verified` (false for
// addresses starting `unverified`) and `name`, for the console's sign-in tests).
//
// Misbehaving on purpose, once, for the sign-in tests: POST /test/next-sign-in with
// {"tamper": "signature"} (the next ID token's signature is broken) or {"nonce": "..."} (the next
// authorization request's nonce is replaced, so the token carries one the client never sent).
import http from 'node:http';
import Provider from 'oidc-provider';

const clients = JSON.parse(process.env.CLIENTS || '[]').map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  redirect_uris: c.redirect_uris,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: c.auth_method === 'basic' ? 'client_secret_basic' : 'client_secret_post',
}));
const counts = { authorization_code: 0, refresh_token: 0, refresh_failures: 0, grants_revoked: 0 };
const loginForm = process.env.LOGIN_FORM === 'true';
let next = {};

function readBody(req) {
  return new Promise((ok) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => ok(body));
  });
}
const grants = new Set();

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients,
    pkce: { required: () => true, methods: ['S256'] },
    ttl: { AccessToken: Number(process.env.ACCESS_TOKEN_TTL || 3600), RefreshToken: 86400, Grant: 86400, Session: 86400, Interaction: 600 },
    rotateRefreshToken: process.env.ROTATE_REFRESH_TOKENS === 'true',
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    features: { devInteractions: { enabled: false }, revocation: { enabled: true }, introspection: { enabled: true } },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    findAccount: async (ctx, id) => ({
      accountId: id,
      claims: async () => (id.includes('@')
        ? { sub: id, email: id, email_verified: !id.startsWith('unverified'), name: id.split('@')[0] }
        : { sub: id }),
    }),
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: ['switchyard-test-cookie-key'] },
  });
  provider.proxy = false;
  provider.on('grant.success', (ctx) => {
    const grant = ctx.oidc.params.grant_type;
    if (grant in counts) counts[grant] += 1;
  });
  provider.on('grant.saved', (grant) => grants.add(grant.jti));
  provider.on('grant.revoked', () => {
    counts.grants_revoked += 1;
  });
  provider.on('grant.error', (ctx) => {
    if (ctx.oidc?.params?.grant_type === 'refresh_token') counts.refresh_failures += 1;
  });
  const callback = provider.callback();

  server.on('request', async (req, res) => {
    try {
      // What a user does by removing the app in the provider's settings: every grant, and the
      // tokens issued under it, are gone.
      if (req.url === '/test/revoke-grants' && req.method === 'POST') {
        for (const id of grants) {
          await provider.AccessToken.revokeByGrantId(id);
          await provider.RefreshToken.revokeByGrantId(id);
          await provider.Grant.adapter.destroy(id);
        }
        grants.clear();
        res.end('{}');
        return;
      }
      if (req.url === '/test/next-sign-in' && req.method === 'POST') {
        next = JSON.parse((await readBody(req)) || '{}');
        res.end('{}');
        return;
      }
      if (next.nonce && req.url.startsWith('/auth?')) {
        const url = new URL(req.url, 'http://x');
        url.searchParams.set('nonce', next.nonce);
        req.url = url.pathname + url.search;
        delete next.nonce;
      }
      if (next.tamper === 'signature' && req.url.startsWith('/token')) {
        delete next.tamper;
        const end = res.end.bind(res);
        res.end = (chunk, ...rest) => {
          try {
            const answer = JSON.parse(String(chunk));
            const [head, payload, signature] = answer.id_token.split('.');
            const flipped = (signature[10] === 'A' ? 'B' : 'A');
            answer.id_token = [head, payload, signature.slice(0, 10) + flipped + signature.slice(11)].join('.');
            chunk = JSON.stringify(answer);
            res.setHeader('content-length', Buffer.byteLength(chunk));
          } catch {
            // not the token answer
          }
          return end(chunk, ...rest);
        };
      }
      if (req.url === '/test/counts') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(counts));
        return;
      }
      if (req.url.startsWith('/interaction/')) {
        const details = await provider.interactionDetails(req, res);
        const { prompt, params, session } = details;
        if (prompt.name === 'login' && loginForm) {
          if (req.method === 'POST') {
            const email = new URLSearchParams(await readBody(req)).get('email') || '';
            await provider.interactionFinished(req, res, { login: { accountId: email.trim().toLowerCase() } }, { mergeWithLastSubmission: false });
            return;
          }
          res.setHeader('content-type', 'text/html; charset=utf-8');
          res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test identity provider</title></head>
<body><main><h1>Test identity provider</h1><form method="post" action="${req.url}">
<label for="email">E-mail</label> <input id="email" name="email" type="email" required>
<button type="submit">Continue</button></form></main></body></html>`);
          return;
        }
        if (prompt.name === 'login') {
          await provider.interactionFinished(req, res, { login: { accountId: 'test-user' } }, { mergeWithLastSubmission: false });
          return;
        }
        const grant = details.grantId
          ? await provider.Grant.find(details.grantId)
          : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
        const missing = prompt.details;
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
        const grantId = await grant.save();
        await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        return;
      }
      callback(req, res);
    } catch (e) {
      res.statusCode = 500;
      res.end(String(e));
    }
  });
  console.log(`listening ${issuer}`);
});
