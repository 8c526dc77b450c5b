import type { Dispatcher } from 'undici'

/**
 * Report an error the undici way: through the handler, never thrown from `dispatch`.
 * Handlers reached through `compose` speak the new API (`onResponseError`); a raw legacy
 * handler gets `onError`; a handler with neither gets the throw (never a silent hang).
 */
export function reportDispatchError(handler: Dispatcher.DispatchHandler, err: Error): void {
  if (typeof handler.onResponseError === 'function') handler.onResponseError(null as unknown as Dispatcher.DispatchController, err)
  else if (typeof handler.onError === 'function') handler.onError(err)
  else throw err
}
