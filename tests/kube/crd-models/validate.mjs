// Validates third-party custom resources (HTTPRoute, Certificate, ScaledObject, ...) with the
// validators generated from their CRDs by @kubernetes-models/* (installed by
// ../install-crd-models). Usage: node validate.mjs NODE_MODULES_DIR < objects.json
// stdin: a JSON array of objects; stdout: a JSON array holding, for each object, its errors.
//
// The generated validators check types, enums, formats and required fields but let unknown
// fields through. The API server prunes or rejects those, so this script rejects them too:
// it wraps the object in proxies that record which fields the validator reads, and reports
// every field it never read (a field the schema does not define). Maps (labels, for example)
// are read in full by the validator, so their keys count as read.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

// API group -> @kubernetes-models package.
const PACKAGES = {
  "gateway.networking.k8s.io": "gateway-api",
  "cert-manager.io": "cert-manager",
  "keda.sh": "keda",
  "monitoring.coreos.com": "prometheus-operator",
  "argoproj.io": "argo-cd",
  "external-secrets.io": "external-secrets",
};

const nodeModules = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const object of objects) {
  results.push(await errorsOf(object));
}
process.stdout.write(JSON.stringify(results));

async function errorsOf(object) {
  const [group, version] = String(object.apiVersion).split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version) {
    return [`no generated validator for apiVersion ${object.apiVersion}`];
  }
  const file = join(nodeModules, "@kubernetes-models", pkg, group, version, `${object.kind}.js`);
  let model;
  try {
    model = (await import(pathToFileURL(file).href))[object.kind];
  } catch {
    return [`no generated validator for ${object.kind} in ${object.apiVersion}`];
  }
  const reads = [];
  const errors = [];
  try {
    model.prototype.validate.call(tracked(object, "", reads));
  } catch (error) {
    errors.push(...error.message.split(", "));
  }
  for (const [path, value, read] of reads) {
    if (Array.isArray(value)) continue;
    for (const key of Object.keys(value)) {
      if (!read.has(key)) errors.push(`${path}/${key} is not a field of the schema`);
    }
  }
  return errors;
}

// A read-only view of `value` that records, per object, the keys read through it.
function tracked(value, path, reads) {
  if (value === null || typeof value !== "object") return value;
  const read = new Set();
  reads.push([path, value, read]);
  const children = new Map();
  return new Proxy(value, {
    get(target, key, receiver) {
      const child = Reflect.get(target, key, receiver);
      if (typeof key !== "string" || !Object.hasOwn(target, key)) return child;
      read.add(key);
      if (!children.has(key)) children.set(key, tracked(child, `${path}/${key}`, reads));
      return children.get(key);
    },
    has(target, key) {
      if (typeof key === "string") read.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      for (const key of Reflect.ownKeys(target)) read.add(key);
      return Reflect.ownKeys(target);
    },
  });
}
