/**
 * An adapter that cannot be imported or inspected, or a base it does not fit. The message is one
 * line that names the file and the cause, and says what to do where that helps.
 */
export class AdapterError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}
