import type { Dispatcher } from 'undici'

/**
 * Report an error the undici way: through the handler, never thrown from `dispatch`.
 * Handlers reached through `compose` speak the new API (`onResponseError`); a raw legacy
 * handler gets `onError`; a handler with neither gets the throw (never a silent hang).
 */
export function reportDispatchError(handler: Dispatcher.DispatchHandler, err: Error): void {
  // undici 8's types no longer name the legacy `onError` (undici 7 still calls it): read it untyped.
  const legacy = handler as { onError?: (err: Error) => void }
  if (typeof handler.onResponseError === 'function') handler.onResponseError(null as unknown as Dispatcher.DispatchController, err)
  else if (typeof legacy.onError === 'function') legacy.onError(err)
  else throw err
}
