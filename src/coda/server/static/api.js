// The server's REST API, with errors a person can act on.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

const GONE = 'Cannot reach the Coda server: is `coda serve` still running? Press Start to try again.';

export async function api(key, path, options = {}) {
  let res;
  try {
    res = await fetch(path, {
      ...options,
      headers: { 'Content-Type': 'application/json', 'X-API-Key': key, ...(options.headers || {}) },
    });
  } catch {
    throw new ApiError(GONE, 0);
  }
  if (res.ok) return res.status === 204 ? null : res.json();
  let detail = '';
  try { detail = (await res.json()).detail; } catch { /* not JSON */ }
  if (res.status === 401 || res.status === 403) {
    throw new ApiError('The server refused the API key: check it and press Start again.', res.status);
  }
  if (res.status === 429) throw new ApiError('Too many requests: wait a moment and try again.', 429);
  if (res.status >= 500) throw new ApiError(`The server failed (HTTP ${res.status}).`, res.status);
  const text = typeof detail === 'string' ? detail : '';
  throw new ApiError(`The server said no (HTTP ${res.status})${text ? `: ${text}` : ''}.`, res.status);
}

export const listConversations = (key) => api(key, '/v1/conversations?limit=50');
export const createConversation = (key) => api(key, '/v1/conversations', { method: 'POST', body: '{}' });
export const history = (key, id) => api(key, `/v1/conversations/${encodeURIComponent(id)}/messages?limit=200`);
export const serverGone = GONE;
