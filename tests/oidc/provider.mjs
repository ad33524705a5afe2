// oidc-provider (panva/node-oidc-provider, OpenID Certified) as the identity provider of the OAuth
// tests: dynamic client registration open to all, headless-friendly dev sign-in (devInteractions),
// client credentials, resource indicators with JWT access tokens (opaque for one client),
// introspection and revocation. Run by tests/identity_provider.py:
//
//   node tests/oidc/provider.mjs '{"port": 0, "keys": [PRIVATE_JWK, ...], "jwksMaxAge": 2}'
//
// It listens on 127.0.0.1 (port 0: any free one) and prints one JSON line, {"issuer": URL}, once it
// answers. `keys` sign its tokens (the first RS256 key signs); `jwksMaxAge` is the Cache-Control
// max-age of its key set, which oidc-provider leaves unset. GET /_requests says how many requests
// each path has had, for tests that count what census-mcp asks for.
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const settings = JSON.parse(process.argv[2] ?? '{}');
const SCOPES = ['census:read', 'census:write'];
// Tests name these clients; their secrets guard nothing but a loopback test run.
const CLIENTS = [
  {
    // census-mcp itself, as an RFC 7662 introspection caller.
    client_id: 'census-mcp',
    client_secret: 'census-mcp-introspection-secret',
    grant_types: [],
    redirect_uris: [],
    response_types: [],
  },
  {
    // A service signing in with client credentials: RFC 9068 JWT access tokens.
    client_id: 'service-jwt',
    client_secret: 'service-jwt-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: SCOPES.join(' '),
  },
  {
    // The same, with opaque access tokens: census-mcp must introspect them.
    client_id: 'service-opaque',
    client_secret: 'service-opaque-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: SCOPES.join(' '),
  },
  {
    // A client an administrator registered with both scopes (as with Entra ID or Okta): a public
    // client signing a person in with PKCE.
    client_id: 'preregistered',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    redirect_uris: ['http://127.0.0.1:1/callback'],
    scope: ['openid', 'offline_access', ...SCOPES].join(' '),
  },
];

const server = createServer();
server.listen(settings.port ?? 0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: CLIENTS,
    jwks: { keys: settings.keys },
    scopes: ['openid', 'offline_access', ...SCOPES],
    cookies: { keys: ['a loopback test provider'] },
    ttl: { AccessToken: 600, ClientCredentials: 600 },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // census-mcp may introspect any token; a client, its own.
        allowedPolicy: (ctx, client, token) => client.clientId === 'census-mcp' || token.clientId === client.clientId,
      },
      revocation: { enabled: true },
      registration: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client, oneOf) => oneOf,
        useGrantedResource: () => true,
        // Any resource is census-mcp: each test serves it on a port of its own.
        getResourceServerInfo: (ctx, resource, client) => ({
          scope: SCOPES.join(' '),
          audience: resource,
          accessTokenTTL: 600,
          accessTokenFormat: client.clientId === 'service-opaque' ? 'opaque' : 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  const requests = {};
  provider.use(async (ctx, next) => {
    if (ctx.path === '/_requests') {
      ctx.body = requests;
      return;
    }
    requests[ctx.path] = (requests[ctx.path] ?? 0) + 1;
    await next();
    if (ctx.path === '/jwks' && settings.jwksMaxAge !== undefined) {
      ctx.set('cache-control', `public, max-age=${settings.jwksMaxAge}`);
    }
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
