//! What the handle and the control routes both do to a running node: zero its counters,
//! switch its fault, restart it; the last two bring the RPC listener back when it should be up.

use std::io;
use std::sync::Arc;

use crate::faults::Fault;
use crate::listener;
use crate::metrics_port;
use crate::node::Node;

pub(crate) fn reset_counters(node: &Node) {
    node.counters.reset();
    node.mem.reset_peak();
}

pub(crate) fn apply_fault(node: &Arc<Node>, fault: Fault, scope: Option<String>) -> io::Result<()> {
    let down = fault == Fault::Down;
    node.set_fault(fault, scope);
    if down {
        node.die();
        Ok(())
    } else if !node.mem.is_oom() {
        listener::bring_up(node)?;
        metrics_port::bring_up(node).map(|_| ())
    } else {
        Ok(())
    }
}

pub(crate) fn restart(node: &Arc<Node>) -> io::Result<()> {
    node.die();
    node.mem.restart();
    if node.fault().0 == Fault::Down {
        return Ok(());
    }
    listener::bring_up(node)?;
    metrics_port::bring_up(node).map(|_| ())
}

/// Sets the memory held besides answers; crossing the limit kills the node.
pub(crate) fn set_ballast(node: &Node, bytes: u64) {
    if node.mem.set_ballast(bytes) {
        node.die();
    }
}
