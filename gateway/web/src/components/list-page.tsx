import { FormEvent, useEffect, useRef, useState } from 'react';
import { errorMessage } from '../api';

/**
 * What a list page of the console holds: the items `fetch` loads (on mount
 * and after every change), the error to show (the server's message), and
 * `act` to run a change and reload, or `submit` for a form's onSubmit. The
 * device type, group and provisioning pages are each one of these.
 */
export function useListPage<T>(fetch: () => Promise<T[]>) {
  const [items, setItems] = useState<T[]>([]);
  const [error, setError] = useState('');
  const fetchRef = useRef(fetch);
  fetchRef.current = fetch;

  async function reload(): Promise<void> {
    try {
      setItems(await fetchRef.current());
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  useEffect(() => void reload(), []);

  /** Runs `work`, then reloads; a failure (of either) becomes the page's error. */
  async function act(work: () => Promise<unknown>): Promise<void> {
    setError('');
    try {
      await work();
      await reload();
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  /** An onSubmit handler that runs `work` as {@link act} does. */
  const submit = (work: () => Promise<unknown>) => (e: FormEvent) => {
    e.preventDefault();
    void act(work);
  };

  return { items, error, setError, reload, act, submit };
}

/** The page's error, announced (role=alert), or nothing. */
export function ErrorText({ error, inline = false }: { error: string; inline?: boolean }) {
  if (!error) return null;
  return inline ? (
    <span className="error" role="alert">
      {error}
    </span>
  ) : (
    <p className="error" role="alert">
      {error}
    </p>
  );
}
