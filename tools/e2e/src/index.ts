export { type Mesh, startMesh } from "./mesh.js";
