//! `pretext info` on the real data sets in ../shared/data (skipped, with a reason, where absent).

mod common;
use common::*;

#[test]
fn info_describes_fashion_mnist_and_cifar10_jpeg() {
    let Some(root) = shared_data() else {
        eprintln!("skipped: ../shared/data is absent");
        return;
    };
    let o = pretext(&["info", root.join("fashion-mnist").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("format: idx"), "{out}");
    assert!(out.contains("train: 60000 images, 1x28x28 "), "{out}");
    assert!(out.contains("test: 10000 images, 1x28x28 "), "{out}");

    let o = pretext(&["info", root.join("cifar10-jpeg").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("format: folder"), "{out}");
    // An image folder is described from its index and the files' headers, nothing decoded.
    assert!(out.contains("train: 50000 images, 10 classes"), "{out}");
    assert!(out.contains("  airplane: 5000"), "{out}");
    assert!(out.contains("test: 10000 images"), "{out}");
    assert!(out.contains("  32x32: 60000"), "{out}");
    assert!(out.contains("colour: 60000 colour, 0 grey"), "{out}");
    assert!(out.contains("unreadable headers: 0"), "{out}");
}
