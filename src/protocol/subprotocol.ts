/** The WebSocket subprotocol a client offers and the server selects (spec section 1). */
export const SUBPROTOCOL = 'framegate.v1';
