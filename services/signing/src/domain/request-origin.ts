/** Where a request came from, for throttling and audit. */
export interface RequestOrigin {
  /** The client's address without its port (or the first `x-forwarded-for` behind a trusted edge). */
  address: string;
}
