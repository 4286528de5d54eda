//! The fake binaries' command channel: one command per stdin line, one answer line each.

use tokio::sync::mpsc;

/// Lines from stdin on a plain thread (tokio's stdin needs a feature the workspace does not
/// enable). At EOF the thread ends and the fake keeps serving.
pub fn spawn_stdin_reader() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `ok <answer>` or `error <why>`; a command with nothing to say prints nothing.
pub fn print_answer(result: anyhow::Result<Option<String>>) {
    match result {
        Ok(Some(answer)) => println!("ok {answer}"),
        Ok(None) => {}
        Err(e) => println!("error {e:#}"),
    }
}
