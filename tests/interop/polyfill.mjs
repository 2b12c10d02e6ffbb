// Promise.withResolvers (ES2024) for Node.js 20, which js-libp2p 3 calls and which Node.js
// has only from 22 on. Imported before anything of libp2p.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
