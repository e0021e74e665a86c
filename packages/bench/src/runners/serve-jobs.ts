// The IPC contract of a load-generating child: it says it is ready, runs each job its parent sends and answers with
// the result or the error's message, and exits when the parent goes away.

export function serveJobs<J, R>(kind: string, runJob: (job: J) => Promise<R>): void {
  process.on('message', (job: J) => {
    runJob(job).then(
      (result) => process.send!({ result }),
      (err: Error) => process.send!({ error: err.message }),
    );
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: kind, pid: process.pid });
}
