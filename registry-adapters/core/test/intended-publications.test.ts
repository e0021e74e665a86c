// IntendedPublications without a registry: what a reconnect replays after publishes and unpublishes while cut off.

import { strict as assert } from 'node:assert';
import { IntendedPublications } from '../src/index';

const KEY = '/dubbo/com.example.Echo/providers';
const OTHER = '/dubbo/com.example.Other/providers';
const P1 = 'dubbo://198.18.0.1:20880/com.example.Echo';
const P2 = 'dubbo://198.18.0.2:20880/com.example.Echo';

/** What `replay` asks of the registry, in order. */
function replayed(publications: IntendedPublications): string[] {
  return publications.replay(
    (group, entry) => `remove ${group} ${entry}`,
    (group, entry) => `write ${group} ${entry}`,
  );
}

describe('IntendedPublications', () => {
  it('replays every intended publication after a reconnect, grouped as published', () => {
    const publications = new IntendedPublications();
    publications.publish(KEY, P1);
    publications.publish(KEY, P2);
    publications.publish(OTHER, P1);
    publications.publish(KEY, P1); // twice is once
    assert.deepEqual(replayed(publications), [`write ${KEY} ${P1}`, `write ${KEY} ${P2}`, `write ${OTHER} ${P1}`]);
    assert.deepEqual(
      [...publications.published()],
      [
        [KEY, P1],
        [KEY, P2],
        [OTHER, P1],
      ],
    );
  });

  it('an unpublish is a pending removal, replayed before the writes until the registry confirms it', () => {
    const publications = new IntendedPublications();
    publications.publish(KEY, P1);
    publications.publish(KEY, P2);
    assert.equal(publications.unpublish(KEY, P1), true);
    assert.equal(publications.has(KEY, P1), false);
    assert.deepEqual(replayed(publications), [`remove ${KEY} ${P1}`, `write ${KEY} ${P2}`]);
    // Still pending: replayed again by the next reconnect.
    assert.deepEqual(replayed(publications), [`remove ${KEY} ${P1}`, `write ${KEY} ${P2}`]);
    publications.removed(KEY, P1);
    assert.deepEqual(replayed(publications), [`write ${KEY} ${P2}`]);
    assert.deepEqual([...publications.pending()], []);
  });

  it('unpublishing what was never published is refused and leaves nothing to remove', () => {
    const publications = new IntendedPublications();
    assert.equal(publications.unpublish(KEY, P1), false);
    publications.publish(KEY, P1);
    assert.equal(publications.unpublish(KEY, P1), true);
    assert.equal(publications.unpublish(KEY, P1), false);
    assert.deepEqual([...publications.pending()], [[KEY, P1]]);
  });

  it('publishing again while the removal is pending cancels the removal', () => {
    const publications = new IntendedPublications();
    publications.publish(KEY, P1);
    publications.unpublish(KEY, P1);
    publications.publish(KEY, P1);
    assert.equal(publications.has(KEY, P1), true);
    assert.deepEqual(replayed(publications), [`write ${KEY} ${P1}`]);
  });

  it('replays the state as it was when called, even when a callback changes it', () => {
    const publications = new IntendedPublications();
    publications.publish(KEY, P1);
    publications.publish(KEY, P2);
    publications.unpublish(KEY, P2);
    const seen: string[] = [];
    publications.replay(
      (group, entry) => {
        // A synchronous registry confirms at once, and an unpublish lands mid-replay.
        publications.removed(group, entry);
        publications.unpublish(KEY, P1);
        seen.push(`remove ${entry}`);
      },
      (_group, entry) => seen.push(`write ${entry}`),
    );
    assert.deepEqual(seen, [`remove ${P2}`, `write ${P1}`]);
    // The unpublish made mid-replay is what the next reconnect redoes.
    assert.deepEqual(replayed(publications), [`remove ${KEY} ${P1}`]);
  });

  it('clear forgets both publications and pending removals', () => {
    const publications = new IntendedPublications();
    publications.publish(KEY, P1);
    publications.publish(KEY, P2);
    publications.unpublish(KEY, P2);
    publications.clear();
    assert.deepEqual(replayed(publications), []);
    assert.equal(publications.has(KEY, P1), false);
  });
});
