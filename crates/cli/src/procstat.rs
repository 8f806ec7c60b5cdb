//! What `gz bench` reads of its services from `/proc`: CPU seconds and peak resident
//! memory of a process, and of the processes it started (the python-provider's workers).

/// CPU seconds and peak resident memory (MiB) of a process.
pub(crate) fn usage(pid: u32) -> (f64, f64) {
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| stat_seconds(&s, &[11, 12]))
        .unwrap_or(0.0);
    let peak = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0;
    (cpu, peak)
}

/// The fields of a `/proc/<pid>/stat` line after the command (which may hold spaces and
/// parentheses): field 0 is the state.
fn stat_fields(stat: &str) -> std::str::SplitWhitespace<'_> {
    stat.rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
}

/// The sum of the given clock-tick fields of a `/proc/<pid>/stat` line, in seconds.
fn stat_seconds(stat: &str, fields: &[usize]) -> f64 {
    let values: Vec<&str> = stat_fields(stat).collect();
    fields
        .iter()
        .filter_map(|&f| values.get(f).and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>()
        / 100.0
}

/// The processes `pid` started (the python-provider's warm workers): how many are alive,
/// their CPU seconds (also of those already reaped) and the sum of their peak RSS in MiB.
pub(crate) fn children_usage(pid: u32) -> (usize, f64, f64) {
    // cutime + cstime: children already waited for.
    let mut cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| stat_seconds(&s, &[13, 14]))
        .unwrap_or(0.0);
    let (mut count, mut peak) = (0, 0.0);
    let entries = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    for entry in entries {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Field 1 after the command: the parent's pid.
        if stat_fields(&stat)
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
            != Some(pid)
        {
            continue;
        }
        count += 1;
        cpu += stat_seconds(&stat, &[11, 12]);
        peak += usage(child).1;
    }
    (count, cpu, peak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_whatever_it_holds() {
        // pid (comm) state ppid … utime(11) stime(12) cutime(13) cstime(14)
        let stat = "42 (a) b (c) S 7 1 1 0 -1 0 0 0 0 0 250 50 100 25 20 0 1 0";
        assert_eq!(stat_fields(stat).nth(1), Some("7"));
        assert_eq!(stat_seconds(stat, &[11, 12]), 3.0);
        assert_eq!(stat_seconds(stat, &[13, 14]), 1.25);
        assert_eq!(stat_seconds("garbage", &[11, 12]), 0.0);
    }

    #[test]
    fn this_process_has_cpu_and_memory_and_its_children_are_found() {
        let (cpu, peak) = usage(std::process::id());
        assert!(cpu >= 0.0 && peak > 0.0, "{cpu} {peak}");
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep starts");
        let (count, _, child_peak) = children_usage(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(count >= 1, "the sleep is a child");
        assert!(child_peak > 0.0);
    }
}
